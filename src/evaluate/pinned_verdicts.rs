//! Scores pinned across changes to the forest's storage: default pipeline
//! models replay a few histories of the CI corpus and every score and
//! verdict must be bit for bit what was recorded (in
//! `testdata/verdicts_whole_points.txt`) from the release whose point store
//! kept each shingled point whole. It lives with the corpus it replays.

use crate::config::PipelineRules;
use crate::scoring::PipelineModel;

/// Scenarios of the CI corpus (seed 1) replayed by
/// [`verdicts_match_those_recorded_before_inputs_were_shared`].
const RECORDED_SCENARIOS: [usize; 4] = [0, 2, 4, 7];

/// Runs of each recorded scenario.
const RECORDED_RUNS: usize = 400;

/// FNV-1a, 64 bits: a digest of verdicts' debug text.
fn fnv64(digest: u64, text: &str) -> u64 {
    text.bytes().fold(digest, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Per recorded scenario: a line naming it with the digest of every
/// verdict's debug text (score, grade, deviations, expected values, …),
/// then one line per run with its score's bits.
fn verdict_record() -> String {
    let corpus = super::corpus::corpus(1);
    let mut out = String::new();
    for index in RECORDED_SCENARIOS {
        let h = &corpus[index];
        let mut model = PipelineModel::new(&h.pipeline, 1.0);
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

/// Every score and verdict of default models over a few hundred runs of
/// several corpus histories is bit for bit what the release whose point
/// store kept each shingled point whole gave (recorded in the fixture).
#[test]
fn verdicts_match_those_recorded_before_inputs_were_shared() {
    let recorded = include_str!("testdata/verdicts_whole_points.txt");
    let now = verdict_record();
    let mut scenario = "";
    for (line, (want, got)) in recorded.lines().zip(now.lines()).enumerate() {
        if want.starts_with("scenario") {
            scenario = want;
        }
        assert_eq!(got, want, "line {} ({scenario})", line + 1);
    }
    assert_eq!(now.lines().count(), recorded.lines().count());
}
