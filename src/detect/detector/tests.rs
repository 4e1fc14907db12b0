//! Tests of the detector on deterministic series: spikes, seasonal
//! patterns, level shifts, attribution, determinism, restore, external
//! scores and memory.

use super::*;

/// Small enough to be quick in debug builds, large enough to behave.
fn config(dimensions: usize, shingle_size: usize) -> DetectorConfig {
    DetectorConfig {
        dimensions,
        shingle_size,
        trees: 30,
        sample_size: 128,
        time_decay: 0.1 / 128.0,
        seed: 17,
        ..DetectorConfig::default()
    }
}

/// Deterministic noise in [-0.5, 0.5).
fn noise(i: usize, k: usize) -> f64 {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (k as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 29;
    (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn flat(i: usize) -> f64 {
    10.0 + 0.2 * noise(i, 0)
}

fn seasonal(i: usize) -> f64 {
    50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 24.0).sin() + 0.5 * noise(i, 0)
}

fn run(
    d: &mut Detector,
    series: impl Fn(usize) -> f64,
    range: std::ops::Range<usize>,
) -> Vec<Verdict> {
    range.map(|i| d.process(&[series(i)])).collect()
}

fn alerts(v: &[Verdict]) -> usize {
    v.iter().filter(|v| v.grade > 0.0).count()
}

#[test]
fn spike_in_flat_series_is_graded_once_and_calm_is_zero() {
    let mut d = Detector::new(config(1, 4));
    let calm = run(&mut d, flat, 0..600);
    assert_eq!(alerts(&calm[200..]), 0, "calm part is normal");
    let spike = d.process(&[20.0]);
    assert!(spike.grade > 0.0, "spike graded: {spike:?}");
    assert!(spike.score > 1.5 * d.thresholder().mean());
    let after = run(&mut d, flat, 601..800);
    assert_eq!(alerts(&after), 0, "no alert storm after one spike");
    let expected = spike.expected.expect("expected value at an anomaly");
    assert!((expected[0] - 10.0).abs() < 0.5, "expected {expected:?}");
    assert!(spike.attribution[0] > 0.0);
}

#[test]
fn spike_in_seasonal_series_is_graded() {
    let mut d = Detector::new(config(1, 8));
    let calm = run(&mut d, seasonal, 0..720);
    assert_eq!(alerts(&calm[300..]), 0, "calm part is normal");
    // A value that is in range overall but wrong for its phase.
    let i = 720 + 6; // sine at its peak (60); send the trough instead.
    run(&mut d, seasonal, 720..i);
    let v = d.process(&[40.0]);
    assert!(v.grade > 0.0, "out-of-phase value graded: {v:?}");
    let expected = v.expected.expect("expected value");
    assert!(
        (expected[0] - seasonal(i)).abs() < 4.0,
        "expected {expected:?} vs {}",
        seasonal(i)
    );
    let after = run(&mut d, seasonal, i + 1..i + 200);
    assert_eq!(alerts(&after), 0);
}

#[test]
fn level_shift_stops_alerting_within_a_bounded_number_of_points() {
    let cfg = config(1, 4);
    let bound = (cfg.shift_limit + cfg.shingle_size as u64) as usize;
    let mut d = Detector::new(cfg);
    run(&mut d, flat, 0..600);
    let shifted = |i: usize| flat(i) + 5.0;
    let during = run(&mut d, shifted, 600..1200);
    assert!(alerts(&during[..4]) > 0, "the shift itself is reported");
    assert_eq!(
        alerts(&during[bound..]),
        0,
        "alerts end after {bound} points"
    );
    let spike = d.process(&[25.0]);
    assert!(spike.grade > 0.0, "still detects on the new level");
}

#[test]
fn accept_baseline_silences_a_known_change() {
    let mut d = Detector::new(config(1, 4));
    run(&mut d, flat, 0..600);
    let first = d.process(&[flat(600) + 5.0]);
    assert!(first.grade > 0.0);
    d.accept_baseline();
    let after = run(&mut d, |i| flat(i) + 5.0, 601..1000);
    assert_eq!(alerts(&after), 0);
    let spike = d.process(&[25.0]);
    assert!(
        spike.grade > 0.0,
        "detects again once the new level is learned"
    );
}

#[test]
fn attribution_points_at_the_dimension_that_spiked() {
    let mut d = Detector::new(config(3, 4));
    for i in 0..600 {
        d.process(&[flat(i), 5.0 + 0.1 * noise(i, 1), 100.0 + noise(i, 2)]);
    }
    let v = d.process(&[flat(600), 9.0, 100.0]);
    assert!(v.grade > 0.0, "{v:?}");
    assert_eq!(v.attribution.len(), 3);
    let top = (0..3)
        .max_by(|a, b| v.attribution[*a].total_cmp(&v.attribution[*b]))
        .unwrap_or(0);
    assert_eq!(top, 1, "attribution {:?}", v.attribution);
    let e = v.expected.expect("expected values");
    assert!((e[1] - 5.0).abs() < 0.3, "expected {e:?}");
    assert!((e[2] - 100.0).abs() < 1.5, "expected {e:?}");
}

#[test]
fn same_seed_same_verdicts_and_seed_matters() {
    let mut a = Detector::new(config(1, 4));
    let mut b = Detector::new(config(1, 4));
    let mut c = Detector::new(DetectorConfig {
        seed: 18,
        ..config(1, 4)
    });
    let mut differs = false;
    for i in 0..300 {
        let x = [seasonal(i)];
        let (va, vb, vc) = (a.process(&x), b.process(&x), c.process(&x));
        assert_eq!(va, vb);
        differs |= va.score != vc.score;
    }
    assert!(differs);
}

#[test]
fn restored_detector_scores_exactly_like_the_original() {
    let mut d = Detector::new(config(2, 4));
    for i in 0..400 {
        d.process(&[seasonal(i), flat(i)]);
    }
    d.process(&[90.0, 10.0]);
    let json = serde_json::to_string(&d).expect("serialises");
    let mut r: Detector = serde_json::from_str(&json).expect("restores");
    for i in 401..600 {
        let x = [seasonal(i), if i == 500 { 30.0 } else { flat(i) }];
        assert_eq!(d.score_only(&x), r.score_only(&x));
        assert_eq!(d.process(&x), r.process(&x), "point {i}");
    }
}

#[test]
fn external_scores_get_the_same_threshold_and_the_forest_still_learns() {
    let mut own = Detector::new(config(1, 4));
    let mut ext = Detector::new(config(1, 4));
    assert!(ext.shingle_of(&[1.0]).is_none());
    let mut grades = Vec::new();
    for i in 0..300 {
        let x = if i == 250 { 30.0 } else { flat(i) };
        own.process(&[x]);
        let shingle = ext.shingle_of(&[x]);
        let score = match &shingle {
            Some(s) => 1.0 + (s[s.len() - 1] - 10.0).abs() / 4.0,
            None => 0.0,
        };
        let v = ext.grade_external(&[x], score, None);
        assert!(v.expected.is_none());
        grades.push(v.grade);
    }
    assert!(grades[250] > 0.0, "the spike is graded");
    let others = grades
        .iter()
        .enumerate()
        .filter(|(i, g)| *i != 250 && **g > 0.0)
        .count();
    assert_eq!(others, 0, "{grades:?}");
    // The forest learned every point: it scores like one that scored
    // them itself.
    assert_eq!(own.seen(), ext.seen());
    assert_eq!(own.forest().updates(), ext.forest().updates());
    assert_eq!(own.score_only(&[10.0]).score, ext.score_only(&[10.0]).score);
}

#[test]
fn external_scores_of_the_corrected_shingle_report_a_spike_once() {
    // A remote scorer that looks at the whole shingle: a spike keeps
    // every shingle it is in far from normal.
    let remote = |s: &[f64]| 1.0 + s.iter().map(|x| (x - 10.0).abs()).fold(0.0, f64::max);
    let mut d = Detector::new(config(1, 4));
    let mut grades = Vec::new();
    for i in 0..300 {
        let x = if i == 250 { 30.0 } else { flat(i) };
        let corrected = d.corrected_shingle_of(&[x]);
        if (251..254).contains(&i) {
            assert!(corrected.is_some(), "point {i}");
        } else {
            assert!(corrected.is_none(), "point {i}");
        }
        let score = d.shingle_of(&[x]).map_or(0.0, |s| remote(&s));
        grades.push(
            d.grade_external(&[x], score, corrected.map(|c| remote(&c)))
                .grade,
        );
    }
    let flagged: Vec<usize> = (0..300).filter(|i| grades[*i] > 0.0).collect();
    assert_eq!(flagged, [250]);
}

#[test]
fn score_only_changes_nothing_and_memory_is_reported() {
    let mut d = Detector::new(config(1, 4));
    run(&mut d, flat, 0..300);
    let before = serde_json::to_string(&d).expect("serialises");
    let v = d.score_only(&[30.0]);
    assert!(v.grade > 0.0);
    assert_eq!(serde_json::to_string(&d).expect("serialises"), before);
    assert_eq!(d.process(&[30.0]), v);
    let full = d.memory_bytes();
    assert!(full > 30 * 128 * 16, "{full}");
    let mut young = Detector::new(config(1, 4));
    run(&mut young, flat, 0..20);
    assert!(
        young.memory_bytes() * 4 < full,
        "a young model is small: {} vs {full}",
        young.memory_bytes()
    );
}
