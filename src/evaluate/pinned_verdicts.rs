//! Scores pinned across changes to the forest's storage: pipeline models
//! replay a few histories of the CI corpus and every score and verdict must
//! be bit for bit what was recorded. Two records: models with the time
//! decay pipeline models had until it followed the sample size (0.1 / 256,
//! as a model saved then keeps it), recorded in
//! `testdata/verdicts_whole_points.txt` from the release whose point store
//! kept each shingled point whole; and default models (0.1 / 64), recorded
//! in `testdata/verdicts_decay_64.txt` when that decay became the default.
//! Both were recorded by forests that store every input value, and are
//! replayed so ([`PipelineModel::store_every_value`]); default models,
//! which leave out the values that never vary, are pinned in
//! `testdata/verdicts_constants_left_out.txt` and checked against the
//! every-value record run by run (same verdicts, scores within rounding).
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

/// How the replaying models lay out their points.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Every input value stored, as the records before it were made.
    EveryValue,
    /// The product's default: values that never varied left out.
    ConstantsLeftOut,
}

/// The verdicts of the recorded scenarios, replayed by pipeline models
/// with time decay `decay` (otherwise the product's settings) and `layout`.
fn replay(decay: f64, layout: Layout) -> Vec<(usize, Vec<crate::domain::Verdict>)> {
    let corpus = super::corpus::corpus(1);
    RECORDED_SCENARIOS
        .iter()
        .map(|&index| {
            let h = &corpus[index];
            let mut cfg = pipeline_detector_config(1.0, seed_for(&h.pipeline));
            cfg.time_decay = decay;
            let mut model = PipelineModel::with_detector(cfg);
            if layout == Layout::EveryValue {
                model.store_every_value();
            }
            let verdicts = h.runs[..RECORDED_RUNS]
                .iter()
                .map(|r| model.observe(&r.run, &PipelineRules::default()))
                .collect();
            (index, verdicts)
        })
        .collect()
}

/// Per recorded scenario (see [`replay`]): a line naming it with the
/// digest of every verdict's debug text (score, grade, deviations,
/// expected values, …), then one line per run with its score's bits.
fn verdict_record(decay: f64, layout: Layout) -> String {
    let mut out = String::new();
    for (index, verdicts) in replay(decay, layout) {
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        let mut scores = String::new();
        for v in verdicts {
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
    assert_same_record(recorded, &verdict_record(EARLIER_DECAY, Layout::EveryValue));
}

/// Every score and verdict of default pipeline models over the same runs
/// is bit for bit what was recorded when 0.1 / 64 became their decay.
#[test]
fn verdicts_match_those_recorded_with_the_decay_of_the_sample_size() {
    assert_eq!(PIPELINE_TIME_DECAY, 0.1 / 64.0);
    let recorded = include_str!("testdata/verdicts_decay_64.txt");
    assert_same_record(
        recorded,
        &verdict_record(PIPELINE_TIME_DECAY, Layout::EveryValue),
    );
}

/// Leaving out the values that never vary (the error rate and latency
/// these build pipelines do not report) changes only the order of the
/// forest's floating-point sums: over the same 1,600 runs, every run gets
/// the same verdict as with every value stored, and every score agrees to
/// within a millionth.
#[test]
fn leaving_out_constant_values_keeps_every_verdict() {
    let every = replay(PIPELINE_TIME_DECAY, Layout::EveryValue);
    let lean = replay(PIPELINE_TIME_DECAY, Layout::ConstantsLeftOut);
    let mut differ = 0;
    for ((index, a), (_, b)) in every.iter().zip(&lean) {
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                a.agrees_within(b, 1e-6),
                "scenario {index}, run {i}: {a:?} vs {b:?}"
            );
            differ += usize::from(a.score != b.score);
        }
    }
    // Not vacuous: the layouts do round differently.
    assert!(differ > 0, "every score bit for bit the same");
}

/// Every score and verdict of default models, which leave out constant
/// values, is bit for bit what was recorded when they began to.
#[test]
fn verdicts_match_those_recorded_with_constant_values_left_out() {
    let recorded = include_str!("testdata/verdicts_constants_left_out.txt");
    assert_same_record(
        recorded,
        &verdict_record(PIPELINE_TIME_DECAY, Layout::ConstantsLeftOut),
    );
}

/// Writes the record of default models to
/// `testdata/verdicts_constants_left_out.txt` (run by hand, with
/// `--ignored`, only when scores are meant to change).
#[test]
#[ignore = "writes the fixture"]
fn record_verdicts_of_default_models() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/evaluate/testdata/verdicts_constants_left_out.txt"
    );
    std::fs::write(
        path,
        verdict_record(PIPELINE_TIME_DECAY, Layout::ConstantsLeftOut),
    )
    .unwrap();
}
