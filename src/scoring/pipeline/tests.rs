//! Tests of the pipeline model: judging, materiality, stand-in learning,
//! new normals, ramps and the weekly rhythm, on deterministic runs.

use super::*;
use crate::domain::{ResourceMetrics, RunStatus, TestCounts};

fn rules() -> PipelineRules {
    PipelineRules::default()
}

/// A deterministic "normal" run number `i` of a pipeline.
fn normal_run(i: u32, duration: f64, failed: u64) -> Run {
    let start: chrono::DateTime<chrono::Utc> = "2026-09-01T00:00:00Z".parse().unwrap();
    let start = start + chrono::Duration::hours(i64::from(i) * 3);
    let jitter = ((i * 7919) % 31) as f64 - 15.0;
    let mut run = Run::new("checkout-service", i.to_string(), RunStatus::Succeeded);
    run.started_at = Some(start);
    run.finished_at =
        Some(start + chrono::Duration::milliseconds(((duration + jitter) * 1000.0) as i64));
    run.tests = Some(TestCounts {
        total: 800,
        failed,
        skipped: 0,
    });
    run.resources = Some(ResourceMetrics {
        cpu_peak_pct: Some(60.0 + jitter / 3.0),
        mem_peak_mb: Some(2000.0 + jitter * 4.0),
    });
    run
}

#[test]
fn learns_normal_flags_a_slow_flaky_run_and_names_the_metrics() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    let mut flagged = 0;
    for i in 0..120 {
        let v = model.observe(&normal_run(i, 420.0, (i % 3) as u64), &rules());
        if v.is_anomalous() {
            flagged += 1;
        }
    }
    assert!(flagged <= 2, "{flagged} of 120 normal runs flagged");
    let v = model.observe(&normal_run(120, 1300.0, 200), &rules());
    assert!(v.is_anomalous(), "{v:?}");
    let metrics: Vec<_> = v.deviations.iter().map(|d| d.metric.as_str()).collect();
    assert!(
        metrics.contains(&"duration_s") || metrics.contains(&"test_failure_rate"),
        "{metrics:?}"
    );
    let duration = v.deviations.iter().find(|d| d.metric == "duration_s");
    if let Some(d) = duration {
        assert_eq!(d.direction, Direction::Up);
        assert!(d.expected < 600.0, "expected about 420, got {}", d.expected);
    }
}

#[test]
fn verdicts_keep_what_was_expected_of_each_metric() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    let first = model.observe(&normal_run(0, 420.0, 1), &rules());
    assert!(first.expected.is_empty(), "none while warming up");
    for i in 1..120 {
        model.observe(&normal_run(i, 420.0, 1), &rules());
    }
    let normal = model.observe(&normal_run(120, 420.0, 1), &rules());
    let d = normal
        .expectation("duration_s")
        .expect("a duration expectation");
    assert!((d.usual - 420.0).abs() < 20.0, "{d:?}");
    // Duration's rule: 20% and 15 s at least, whichever is larger.
    assert!(d.high - d.usual >= 0.2 * d.usual - 1e-9, "{d:?}");
    assert!(d.low < d.usual && d.low >= 0.0, "{d:?}");
    assert!(normal.expectation("test_failure_rate").is_some());
    assert!(normal.expectation("error_rate").is_none(), "not reported");
    let slow = model.observe(&normal_run(121, 1300.0, 1), &rules());
    let d = slow.expectation("duration_s").unwrap();
    assert!(slow.is_anomalous() && 1300.0 > d.high, "{slow:?}");
}

#[test]
fn external_scores_are_thresholded_and_blame_the_metric_that_moved() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    // A stand-in scorer: distance of the newest duration from normal.
    let score = |row: &[f64]| 1.0 + 0.1 * row[row.len() - BUILTIN_METRICS.len()].abs();
    let mut flagged = 0;
    for i in 0..60 {
        let run = normal_run(i, 420.0, 0);
        let row = model.shingled_point(&run, &rules());
        if i < PIPELINE_SHINGLE as u32 - 1 {
            assert!(row.is_none(), "run {i}");
        }
        let v = match row {
            Some(row) => {
                assert_eq!(row.len(), PIPELINE_SHINGLE * BUILTIN_METRICS.len());
                model.observe_with_external_scores(&run, &rules(), score(&row), None)
            }
            None => model.observe(&run, &rules()),
        };
        flagged += usize::from(v.is_anomalous());
    }
    assert_eq!(flagged, 0);
    let spike = normal_run(60, 1500.0, 0);
    let row = model.shingled_point(&spike, &rules()).unwrap();
    let v = model.observe_with_external_scores(&spike, &rules(), score(&row), None);
    assert!(v.is_anomalous(), "{v:?}");
    assert_eq!(v.score, score(&row));
    assert_eq!(v.deviations[0].metric, "duration_s");
    assert_eq!(v.deviations[0].direction, Direction::Up);
    assert!((v.deviations[0].expected - 420.0).abs() < 30.0, "{v:?}");
    // The embedded forest learned every run and can take over.
    assert_eq!(model.runs_seen(), 61);
    assert!(!model
        .observe(&normal_run(61, 420.0, 0), &rules())
        .is_anomalous());
}

#[test]
fn a_restored_model_scores_exactly_like_the_original() {
    let mut model = PipelineModel::new("p", 1.0);
    for i in 0..60 {
        model.observe(&normal_run(i, 300.0, 1), &rules());
    }
    let saved = serde_json::to_string(&model).unwrap();
    let mut restored: PipelineModel = serde_json::from_str(&saved).unwrap();
    for i in 60..90 {
        let run = normal_run(i, if i == 75 { 900.0 } else { 300.0 }, 1);
        assert_eq!(
            model.observe(&run, &rules()),
            restored.observe(&run, &rules()),
            "run {i}"
        );
    }
}

#[test]
fn accepting_a_baseline_stops_alerts_for_the_new_level() {
    let mut model = PipelineModel::new("p", 1.0);
    for i in 0..80 {
        model.observe(&normal_run(i, 400.0, 0), &rules());
    }
    let first = model.observe(&normal_run(80, 560.0, 0), &rules());
    assert!(
        first.is_anomalous(),
        "a 40% slower build is abnormal at first: {first:?}"
    );
    model.accept_baseline(Some("duration_s"));
    let later: Vec<bool> = (81..90)
        .map(|i| {
            model
                .observe(&normal_run(i, 560.0, 0), &rules())
                .is_anomalous()
        })
        .collect();
    assert!(later.iter().all(|a| !a), "{later:?}");
}

#[test]
fn a_lasting_shift_stops_alerting_on_its_own() {
    let mut model = PipelineModel::new("p", 1.0);
    for i in 0..80 {
        model.observe(&normal_run(i, 400.0, 0), &rules());
    }
    let flags: Vec<bool> = (80..160)
        .map(|i| {
            model
                .observe(&normal_run(i, 520.0, 0), &rules())
                .is_anomalous()
        })
        .collect();
    let last_alert = flags.iter().rposition(|f| *f).unwrap_or(0);
    assert!(flags[0], "the shift is noticed");
    assert!(
        last_alert < 40,
        "still alerting {last_alert} runs after a 30% shift: {flags:?}"
    );
}

/// A run of `pipeline`-like shape starting at `start` with the given
/// duration, failed tests, CPU and memory.
fn run_at(i: u32, start: DateTime<Utc>, duration: f64, failed: u64, mem: f64) -> Run {
    let mut run = Run::new("checkout-service", i.to_string(), RunStatus::Succeeded);
    run.started_at = Some(start);
    run.finished_at = Some(start + chrono::Duration::milliseconds((duration * 1000.0) as i64));
    run.tests = Some(TestCounts {
        total: 800,
        failed,
        skipped: 0,
    });
    run.resources = Some(ResourceMetrics {
        cpu_peak_pct: Some(60.0),
        mem_peak_mb: Some(mem),
    });
    run
}

/// Deterministic jitter in [-1, 1).
fn jitter(i: u32, k: u32) -> f64 {
    let z = (u64::from(i) * 0x9E37_79B9 + u64::from(k) * 0x85EB_CA6B) % 1000;
    z as f64 / 500.0 - 1.0
}

fn ordinary(i: u32) -> Run {
    let start = "2026-09-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        + chrono::Duration::hours(i64::from(i) * 2);
    run_at(
        i,
        start,
        420.0 + 20.0 * jitter(i, 1),
        u64::from(i % 3 == 0),
        2000.0 + 40.0 * jitter(i, 2),
    )
}

fn with_duration(mut run: Run, duration: f64) -> Run {
    let start = run.started_at.unwrap();
    run.finished_at = Some(start + chrono::Duration::milliseconds((duration * 1000.0) as i64));
    run
}

#[test]
fn the_same_problem_twice_is_abnormal_twice() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..200 {
        model.observe(&ordinary(i), &rules());
    }
    let first = model.observe(&with_duration(ordinary(200), 1680.0), &rules());
    assert!(first.is_anomalous(), "{first:?}");
    for i in 201..220 {
        let v = model.observe(&ordinary(i), &rules());
        assert!(!v.is_anomalous(), "ordinary run {i}: {v:?}");
    }
    let second = model.observe(&with_duration(ordinary(220), 1680.0), &rules());
    assert!(
        second.is_anomalous(),
        "the repeat is graded too: {second:?}"
    );
    assert!(
        second.grade >= first.grade * 0.5,
        "{} vs {}",
        second.grade,
        first.grade
    );
    assert_eq!(second.deviations[0].metric, "duration_s");
    let why = second.why().join("; ");
    assert!(why.contains("duration 4.0× the usual 7 min"), "{why}");
    assert!(why.contains("slower builds are problems"), "{why}");
}

#[test]
fn a_faster_build_is_not_a_problem_and_says_why() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..200 {
        model.observe(&ordinary(i), &rules());
    }
    let faster = model.observe(&with_duration(ordinary(200), 150.0), &rules());
    assert!(!faster.is_anomalous(), "{faster:?}");
    if let Some(d) = faster.dismissed.first() {
        assert_eq!(d.dismissed, Some(Dismissal::Direction));
        assert!(faster.why()[0].contains("faster builds are not problems"));
    }
    // The same rule, reversed for this pipeline: faster is a problem.
    let mut reversed = rules();
    reversed.metrics[0].direction = crate::config::ProblemDirection::Both;
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..200 {
        model.observe(&ordinary(i), &reversed);
    }
    let v = model.observe(&with_duration(ordinary(200), 150.0), &reversed);
    assert!(v.is_anomalous(), "{v:?}");
}

#[test]
fn a_small_unusual_change_is_dismissed_as_too_small() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    // A very steady pipeline: 10% slower is far outside its noise.
    for i in 0..200 {
        let run = with_duration(ordinary(i), 420.0 + jitter(i, 3));
        model.observe(&run, &rules());
    }
    let v = model.observe(&with_duration(ordinary(200), 462.0), &rules());
    assert!(!v.is_anomalous(), "10% slower is below the 20% rule: {v:?}");
    let mut strict = rules();
    strict.metrics[0].min_ratio = 0.05;
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..200 {
        let run = with_duration(ordinary(i), 420.0 + jitter(i, 3));
        model.observe(&run, &strict);
    }
    let v = model.observe(&with_duration(ordinary(200), 462.0), &strict);
    assert!(v.is_anomalous(), "a 5% rule catches it: {v:?}");
}

#[test]
fn a_lasting_change_becomes_the_new_normal_after_k_runs() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..150 {
        model.observe(&ordinary(i), &rules());
    }
    let k = rules().new_normal_after;
    let mut verdicts = Vec::new();
    for i in 150..200 {
        let run = with_duration(ordinary(i), 600.0 + 20.0 * jitter(i, 1));
        verdicts.push(model.observe(&run, &rules()));
    }
    let abnormal: Vec<usize> = (0..verdicts.len())
        .filter(|i| verdicts[*i].is_anomalous())
        .collect();
    assert_eq!(abnormal, (0..k as usize - 1).collect::<Vec<_>>());
    let declared = &verdicts[k as usize - 1];
    assert_eq!(declared.new_normal.len(), 1, "{declared:?}");
    assert_eq!(declared.new_normal[0].metric, "duration_s");
    assert!((declared.new_normal[0].observed - 600.0).abs() < 30.0);
    assert!((declared.new_normal[0].expected - 420.0).abs() < 30.0);
    assert!(
        declared.why()[0].contains("new normal"),
        "{:?}",
        declared.why()
    );
    // Problems on the new level are still found.
    let spike = model.observe(&with_duration(ordinary(200), 2400.0), &rules());
    assert!(spike.is_anomalous(), "{spike:?}");
    assert!(
        (spike.deviations[0].expected - 600.0).abs() < 40.0,
        "{spike:?}"
    );
}

#[test]
fn alternating_problems_do_not_become_normal() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..150 {
        model.observe(&ordinary(i), &rules());
    }
    for n in 0..8 {
        let i = 150 + n;
        let run = if n % 2 == 0 {
            with_duration(ordinary(i), 1500.0)
        } else {
            run_at(i, ordinary(i).started_at.unwrap(), 420.0, 120, 2000.0)
        };
        let v = model.observe(&run, &rules());
        assert!(v.is_anomalous(), "problem {n}: {v:?}");
        assert!(v.new_normal.is_empty());
    }
}

#[test]
fn weekend_builds_follow_their_own_normal_after_three_weeks() {
    // Four runs per weekday in working hours; two long ones each
    // weekend day (a bigger test matrix).
    let monday = "2026-08-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let mut runs = Vec::new();
    for day in 0..49i64 {
        let date = monday + chrono::Duration::days(day);
        let weekend = day % 7 >= 5;
        let (count, base) = if weekend { (2, 900.0) } else { (4, 420.0) };
        for k in 0..count {
            let i = runs.len() as u32;
            let start = date + chrono::Duration::hours(9 + 2 * k);
            runs.push((
                weekend,
                run_at(i, start, base + 20.0 * jitter(i, 1), 0, 2000.0),
            ));
        }
    }
    let mut model = PipelineModel::new("checkout-service", 1.0);
    let mut late_weekend_alerts = 0;
    let mut seasonal_seen = false;
    for (n, (weekend, run)) in runs.iter().enumerate() {
        let v = model.observe(run, &rules());
        let day = (run.started_at.unwrap() - monday).num_days();
        if day < 20 {
            assert!(!v.seasonal, "run {n} on day {day}");
        }
        seasonal_seen |= v.seasonal;
        if day >= 28 && *weekend && v.is_anomalous() {
            late_weekend_alerts += 1;
        }
    }
    assert!(seasonal_seen);
    assert_eq!(
        late_weekend_alerts, 0,
        "weekend builds are normal once learned"
    );
    // A weekday build as long as a weekend one is still a problem.
    let tuesday = monday + chrono::Duration::days(50) + chrono::Duration::hours(10);
    let v = model.observe(&run_at(9999, tuesday, 900.0, 0, 2000.0), &rules());
    assert!(v.is_anomalous(), "{v:?}");
    assert!(v.seasonal);
}

#[test]
fn a_ramp_is_not_a_new_normal_and_its_end_is_still_abnormal() {
    let mut model = PipelineModel::new("checkout-service", 1.0);
    for i in 0..150 {
        model.observe(&ordinary(i), &rules());
    }
    // Memory climbs 6% a run from 2 GB for 15 runs (a leak), then the
    // build is killed out of memory.
    let mut verdicts = Vec::new();
    for n in 0..16u32 {
        let i = 150 + n;
        let mem = if n == 15 {
            4096.0
        } else {
            2000.0 * (1.0 + 0.06 * f64::from(n + 1))
        };
        let run = run_at(i, ordinary(i).started_at.unwrap(), 420.0, 0, mem);
        verdicts.push(model.observe(&run, &rules()));
    }
    assert!(
        verdicts.iter().all(|v| v.new_normal.is_empty()),
        "{verdicts:?}"
    );
    let last = verdicts.last().unwrap();
    assert!(last.is_anomalous(), "the out-of-memory run: {last:?}");
    let flagged = verdicts.iter().filter(|v| v.is_anomalous()).count();
    assert!(flagged >= 10, "{flagged} of 16 ramp runs flagged");
}

#[test]
fn the_memory_parts_add_up_to_the_memory_bytes() {
    let mut model = PipelineModel::new("p", 1.0);
    for i in 0..200 {
        model.observe(&normal_run(i, 300.0, 1), &rules());
    }
    let parts = model.memory_parts();
    assert_eq!(parts.held(), model.memory_bytes());
    assert!(parts.used() <= parts.held());
    let names: Vec<&str> = parts.parts().iter().map(|p| p.name).collect();
    for name in ["tree nodes", "cached boxes", "sampler entries", "scalers"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // The detector lies within the model: its fixed fields count once.
    let fixed: usize = parts
        .parts()
        .iter()
        .filter(|p| p.name.ends_with("(fixed fields)") && !p.name.starts_with("tree"))
        .map(|p| p.held)
        .sum();
    assert_eq!(fixed, std::mem::size_of::<PipelineModel>());
}
