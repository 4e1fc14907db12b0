//! The Numenta Anomaly Benchmark (NAB v1.x) scorer, used to evaluate the
//! detector on labelled public series: probationary period, anomaly
//! windows, the scaled sigmoid, earliest detection per window, weighted
//! false positives, the three application profiles, the corpus-wide
//! threshold sweep per profile, and normalisation between the null and the
//! perfect detector.
//!
//! It owns only scoring: reading series and running a detector are the
//! caller's business. Row positions are indices into a file's rows;
//! windows are inclusive `[start, end]` row ranges.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

/// Weights of one NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Profile name as NAB spells it.
    pub name: &'static str,
    /// Reward of a window detected at its left edge.
    pub tp: f64,
    /// Cost of a false positive far from any window.
    pub fp: f64,
    /// Cost of a window with no detection.
    pub fn_: f64,
}

/// NAB's three profiles: standard, reward_low_FP, reward_low_FN.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FP",
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        name: "reward_low_FN",
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// Why labels could not be read.
#[derive(Debug, Error)]
#[error("bad NAB labels: {0}")]
pub struct LabelError(String);

/// Anomaly windows per file (`category/file.csv`), as timestamps.
pub type WindowLabels = BTreeMap<String, Vec<(String, String)>>;

/// Parses `combined_windows.json`.
pub fn parse_windows(json: &str) -> Result<WindowLabels, LabelError> {
    #[derive(Deserialize)]
    struct Raw(BTreeMap<String, Vec<Vec<String>>>);
    let raw: Raw = serde_json::from_str(json).map_err(|e| LabelError(e.to_string()))?;
    raw.0
        .into_iter()
        .map(|(file, windows)| {
            let windows = windows
                .into_iter()
                .map(|w| match <[String; 2]>::try_from(w) {
                    Ok([a, b]) => Ok((a, b)),
                    Err(w) => Err(LabelError(format!(
                        "{file}: a window has {} bounds, not 2",
                        w.len()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((file, windows))
        })
        .collect()
}

/// The comparable part of a NAB timestamp (`YYYY-MM-DD HH:MM:SS`).
fn stamp(ts: &str) -> &str {
    ts.get(..19).unwrap_or(ts)
}

/// Windows as inclusive row ranges of a file with these timestamps (in
/// order): from the first row at or after the start to the last row at or
/// before the end. Windows that contain no row are dropped.
pub fn window_rows(timestamps: &[String], windows: &[(String, String)]) -> Vec<(usize, usize)> {
    windows
        .iter()
        .filter_map(|(start, end)| {
            let first = timestamps.iter().position(|t| stamp(t) >= stamp(start))?;
            let last = timestamps.iter().rposition(|t| stamp(t) <= stamp(end))?;
            (first <= last).then_some((first, last))
        })
        .collect()
}

/// Rows at the start of a file whose detections are ignored.
pub fn probationary_rows(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// NAB's scaled sigmoid, `2 / (1 + e^(5y)) - 1`, taken as -1 past y = 3.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// One file's detector output and labels.
#[derive(Debug, Clone)]
pub struct ScoredFile {
    /// `category/file.csv`.
    pub name: String,
    /// Detector output per row, in [0, 1].
    pub scores: Vec<f64>,
    /// Anomaly windows as inclusive row ranges, in order.
    pub windows: Vec<(usize, usize)>,
}

/// What a detection at a row is worth under a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowValue {
    /// Inside window `w` (index into the corpus' windows): reward if it is
    /// the window's earliest detection.
    Window { w: usize, reward: f64 },
    /// Outside every window: a false positive of this (negative) value.
    FalsePositive(f64),
}

fn row_value(f: &ScoredFile, i: usize, window_base: usize, p: &Profile) -> RowValue {
    let mut prev: Option<(usize, usize)> = None;
    for (k, &(a, b)) in f.windows.iter().enumerate() {
        if i >= a && i <= b {
            let width = (b - a + 1) as f64;
            let pos = -((b - i + 1) as f64) / width;
            return RowValue::Window {
                w: window_base + k,
                reward: p.tp * scaled_sigmoid(pos) / scaled_sigmoid(-1.0),
            };
        }
        if b < i {
            prev = Some((a, b));
        }
    }
    match prev {
        None => RowValue::FalsePositive(-p.fp),
        Some((a, b)) => {
            let width = (b - a + 1) as f64;
            let q = (i - b) as f64 / (width - 1.0).max(1.0);
            RowValue::FalsePositive(p.fp * scaled_sigmoid(q))
        }
    }
}

/// Counts and raw score of a detector at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Detections are rows with output at or above this.
    pub threshold: f64,
    /// Sum over files of the profile-weighted score.
    pub raw: f64,
    /// Windows with a detection.
    pub true_positives: usize,
    /// Detections outside every window (after the probationary period).
    pub false_positives: usize,
    /// Windows without a detection.
    pub false_negatives: usize,
    /// Raw score of detecting nothing.
    pub null: f64,
    /// Raw score of detecting every window at its left edge.
    pub perfect: f64,
}

impl Outcome {
    /// `100 (raw - null) / (perfect - null)`.
    pub fn normalised(&self) -> f64 {
        100.0 * (self.raw - self.null) / (self.perfect - self.null)
    }
}

/// The corpus score at one threshold, row by row (the definition; the
/// sweep must agree with it).
pub fn score_at(files: &[ScoredFile], p: &Profile, threshold: f64) -> Outcome {
    let mut raw = 0.0;
    let (mut tp, mut fp, mut fn_, mut windows) = (0, 0, 0, 0);
    for f in files {
        let start = probationary_rows(f.scores.len());
        let mut earliest: Vec<Option<f64>> = vec![None; f.windows.len()];
        for (i, &s) in f.scores.iter().enumerate().skip(start) {
            if s < threshold {
                continue;
            }
            match row_value(f, i, 0, p) {
                RowValue::Window { w, reward } => {
                    if earliest[w].is_none() {
                        earliest[w] = Some(reward);
                    }
                }
                RowValue::FalsePositive(v) => {
                    raw += v;
                    fp += 1;
                }
            }
        }
        windows += f.windows.len();
        for e in earliest {
            match e {
                Some(r) => {
                    raw += r;
                    tp += 1;
                }
                None => {
                    raw -= p.fn_;
                    fn_ += 1;
                }
            }
        }
    }
    Outcome {
        threshold,
        raw,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
        null: -p.fn_ * windows as f64,
        perfect: p.tp * windows as f64,
    }
}

/// NAB's threshold choice for a profile: the threshold among the distinct
/// output values (after probation) that maximises the corpus score. Ties go
/// to the higher threshold. Runs in O(n log n) over all rows.
pub fn sweep(files: &[ScoredFile], p: &Profile) -> Outcome {
    struct Event {
        score: f64,
        row: usize,
        value: RowValue,
    }
    let mut events = Vec::new();
    let mut window_count = 0usize;
    for f in files {
        let start = probationary_rows(f.scores.len());
        for (i, &s) in f.scores.iter().enumerate().skip(start) {
            events.push(Event {
                score: s,
                row: i,
                value: row_value(f, i, window_count, p),
            });
        }
        window_count += f.windows.len();
    }
    events.sort_by(|a, b| b.score.total_cmp(&a.score));
    let null = -p.fn_ * window_count as f64;
    let perfect = p.tp * window_count as f64;
    // Earliest detected row and its reward, per window.
    let mut earliest: Vec<Option<(usize, f64)>> = vec![None; window_count];
    let mut raw = null;
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best = Outcome {
        threshold: f64::INFINITY,
        raw,
        true_positives: 0,
        false_positives: 0,
        false_negatives: window_count,
        null,
        perfect,
    };
    let mut i = 0;
    while i < events.len() {
        let level = events[i].score;
        while i < events.len() && events[i].score == level {
            let e = &events[i];
            match e.value {
                RowValue::FalsePositive(v) => {
                    raw += v;
                    fp += 1;
                }
                RowValue::Window { w, reward } => match earliest[w] {
                    None => {
                        raw += reward + p.fn_;
                        tp += 1;
                        earliest[w] = Some((e.row, reward));
                    }
                    Some((row, old)) if e.row < row => {
                        raw += reward - old;
                        earliest[w] = Some((e.row, reward));
                    }
                    Some(_) => {}
                },
            }
            i += 1;
        }
        if raw > best.raw {
            best = Outcome {
                threshold: level,
                raw,
                true_positives: tp,
                false_positives: fp,
                false_negatives: window_count - tp,
                null,
                perfect,
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(scores: Vec<f64>, windows: Vec<(usize, usize)>) -> ScoredFile {
        ScoredFile {
            name: "t.csv".into(),
            scores,
            windows,
        }
    }

    #[test]
    fn sigmoid_and_probation_follow_nab() {
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298).abs() < 1e-8);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        assert_eq!(probationary_rows(1000), 150);
        assert_eq!(probationary_rows(22_000), 750);
    }

    #[test]
    fn earliest_detection_counts_and_false_positives_are_weighted() {
        let p = PROFILES[0];
        let mut s = vec![0.0; 1000];
        s[400] = 0.9; // left edge of the window [400, 499]
        s[450] = 0.9; // later in the window: ignored
        s[100] = 0.9; // in probation: ignored
        s[200] = 0.9; // before the first window: -A_fp
        s[520] = 0.9; // just after the window: small cost
        let f = file(s, vec![(400, 499)]);
        let o = score_at(std::slice::from_ref(&f), &p, 0.5);
        assert_eq!(
            (o.true_positives, o.false_positives, o.false_negatives),
            (1, 2, 0)
        );
        let after = p.fp * scaled_sigmoid(21.0 / 99.0);
        let expected = 1.0 - p.fp + after;
        assert!((o.raw - expected).abs() < 1e-12, "{} vs {expected}", o.raw);
        assert_eq!(o.null, -1.0);
        assert_eq!(o.perfect, 1.0);
        let none = score_at(&[f], &p, 0.95);
        assert_eq!(none.raw, -1.0);
        assert_eq!(none.normalised(), 0.0);
    }

    #[test]
    fn sweep_agrees_with_the_definition_at_its_threshold() {
        let mut files = Vec::new();
        for k in 0..4u64 {
            let mut state = k + 1;
            let scores: Vec<f64> = (0..600)
                .map(|i| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let base = (state >> 40) as f64 / (1u64 << 24) as f64 * 0.6;
                    if (300..320).contains(&i) && k % 2 == 0 {
                        base + 0.4
                    } else {
                        base
                    }
                })
                .collect();
            files.push(file(scores, vec![(290, 340), (450, 470)]));
        }
        for p in &PROFILES {
            let best = sweep(&files, p);
            let direct = score_at(&files, p, best.threshold);
            assert!(
                (best.raw - direct.raw).abs() < 1e-9,
                "{best:?} vs {direct:?}"
            );
            assert_eq!(best.true_positives, direct.true_positives);
            assert_eq!(best.false_positives, direct.false_positives);
            for t in [0.3, 0.5, 0.59, 0.7, 0.9, 0.99] {
                assert!(score_at(&files, p, t).raw <= best.raw + 1e-9);
            }
        }
    }

    #[test]
    fn windows_map_timestamps_to_rows() {
        let ts: Vec<String> = (0..10)
            .map(|m| format!("2014-04-10 07:{m:02}:00"))
            .collect();
        let w = vec![(
            "2014-04-10 07:02:30.000000".to_string(),
            "2014-04-10 07:05:00.000000".to_string(),
        )];
        assert_eq!(window_rows(&ts, &w), vec![(3, 5)]);
        let json = r#"{"a/b.csv": [["2014-04-10 07:02:30.000000", "2014-04-10 07:05:00.000000"]], "c/d.csv": []}"#;
        let labels = parse_windows(json).expect("parses");
        assert_eq!(labels["a/b.csv"], w);
        assert!(labels["c/d.csv"].is_empty());
    }
}
