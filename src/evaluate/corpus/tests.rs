//! Tests of the corpus generator: determinism per seed, every scenario
//! present, labels where the scenarios put them.

use super::*;
use chrono::{Datelike, Timelike, Weekday};

fn problems(h: &History) -> Vec<&LabelledRun> {
    h.runs
        .iter()
        .filter(|r| r.label == Label::Problem)
        .collect()
}

fn duration(r: &LabelledRun) -> f64 {
    r.run.duration_s().unwrap_or(f64::NAN)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
fn the_same_seed_gives_the_same_corpus_and_other_seeds_differ() {
    assert_eq!(corpus(1), corpus(1));
    assert_ne!(corpus(1), corpus(2));
    for s in Scenario::ALL {
        assert_ne!(history(s, 2), history(s, 3), "{}", s.name());
        assert_eq!(history(s, 7), corpus(7)[s as usize]);
    }
}

#[test]
fn every_scenario_is_present_once_with_hundreds_of_runs() {
    let c = corpus(1);
    assert_eq!(c.len(), Scenario::ALL.len());
    for (h, s) in c.iter().zip(Scenario::ALL) {
        assert_eq!(h.scenario, s);
        assert_eq!(Scenario::parse(s.name()), Some(s));
        assert!(h.runs.len() >= 400, "{}: {}", s.name(), h.runs.len());
        assert!(h.runs.iter().all(|r| r.run.pipeline == h.pipeline));
        assert!(
            h.runs.iter().all(|r| r
                .run
                .validate("", "2026-11-25T12:00:00Z".parse().unwrap())
                .is_empty()),
            "{}: a run is refused by the run limits at the test clock",
            s.name()
        );
    }
    let mut pipelines: Vec<_> = c.iter().map(|h| h.pipeline.clone()).collect();
    pipelines.sort();
    pipelines.dedup();
    assert_eq!(pipelines.len(), c.len());
}

#[test]
fn problems_are_where_each_scenario_puts_them() {
    for seed in 1..=5 {
        let c = corpus(seed);
        let count = |s: Scenario| problems(&c[s as usize]).len();
        assert_eq!(count(Scenario::RepeatedSlowBuild), 3);
        assert!((3..=9).contains(&count(Scenario::TestFailureBursts)));
        assert_eq!(count(Scenario::StepChange), 3);
        assert_eq!(count(Scenario::ResourceJumps), 4);
        assert_eq!(count(Scenario::HungBuilds), 2);
        assert_eq!(count(Scenario::WeeklyPattern), 2);
        assert_eq!(count(Scenario::BadDeploys), 2);
        for s in [
            Scenario::SlowDrift,
            Scenario::NoisyButFine,
            Scenario::GotFaster,
        ] {
            assert_eq!(count(s), 0, "{} seed {seed}", s.name());
        }
        // No problem before the model has had time to learn.
        for h in &c {
            let first = h.runs.iter().position(|r| r.label == Label::Problem);
            assert!(first.is_none_or(|i| i >= 100), "{}", h.scenario.name());
        }
    }
}

#[test]
fn repeated_slow_builds_are_about_four_times_the_usual_and_20_runs_apart() {
    let h = history(Scenario::RepeatedSlowBuild, 1);
    let usual = median(h.runs.iter().map(duration).collect());
    let spikes: Vec<usize> = h
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.label == Label::Problem)
        .map(|(i, _)| i)
        .collect();
    for &i in &spikes {
        let x = duration(&h.runs[i]) / usual;
        assert!((2.8..6.0).contains(&x), "{x}");
    }
    // Retries can add a run or two between the first two spikes.
    assert!((20..=24).contains(&(spikes[1] - spikes[0])), "{spikes:?}");
}

#[test]
fn a_step_change_declares_a_new_normal_at_its_first_run() {
    for seed in 1..=3 {
        let h = history(Scenario::StepChange, seed);
        let starts = h.new_normal_starts();
        assert_eq!(starts.len(), 1);
        let at = starts[0];
        assert_eq!(h.runs[at].label, Label::Problem);
        let labels = h.labels();
        assert_eq!(
            labels[at..at + 3],
            [Label::Problem; 3],
            "first three runs of the step"
        );
        assert!(labels[at + 3..].iter().all(|l| *l == Label::Ordinary));
        let before = median(h.runs[at - 50..at].iter().map(duration).collect());
        let after = median(h.runs[at + 30..].iter().map(duration).collect());
        assert!(after / before > 1.4, "{before} -> {after}");
    }
}

#[test]
fn the_memory_leak_ends_in_an_out_of_memory_run() {
    for seed in 1..=3 {
        let h = history(Scenario::MemoryLeak, seed);
        let p = problems(&h);
        let oom = p.last().expect("problems");
        assert_eq!(oom.run.status, RunStatus::Failed);
        let mem = |r: &LabelledRun| r.run.resources.and_then(|x| x.mem_peak_mb).unwrap_or(0.0);
        assert!(mem(oom) > 4000.0);
        assert!(oom.run.log_excerpt.as_deref().unwrap_or("").contains("137"));
        // The ramp's problems are consecutive and climb.
        assert!(p.len() >= 8, "{}", p.len());
        let first = h.runs.iter().position(|r| r.label == Label::Problem);
        let first = first.unwrap_or(0);
        assert!(h.runs[first..first + p.len()]
            .iter()
            .all(|r| r.label == Label::Problem || r.run.attempt == 2));
        assert!(mem(p[0]) < mem(p[p.len() - 2]));
        // Fixed right after: memory back near the usual.
        let usual = median(h.runs[..100].iter().map(mem).collect());
        let later = median(h.runs[first + p.len() + 5..].iter().map(mem).collect());
        assert!((later / usual - 1.0).abs() < 0.1);
    }
}

#[test]
fn hung_builds_last_hours_and_nightlies_differ_legitimately() {
    let h = history(Scenario::HungBuilds, 1);
    for r in problems(&h) {
        assert!(duration(r) >= 2.0 * 3600.0);
    }
    let w = history(Scenario::WeeklyPattern, 1);
    let night: Vec<&LabelledRun> = w
        .runs
        .iter()
        .filter(|r| r.run.started_at.is_some_and(|t| t.hour() == 2))
        .collect();
    let day: Vec<&LabelledRun> = w
        .runs
        .iter()
        .filter(|r| r.run.started_at.is_some_and(|t| t.hour() >= 8))
        .collect();
    assert!(night.len() > 50 && day.len() > 200);
    let ratio = median(night.iter().map(|r| duration(r)).collect())
        / median(day.iter().map(|r| duration(r)).collect());
    assert!((2.5..4.0).contains(&ratio), "{ratio}");
    assert!(night
        .iter()
        .filter(|r| r.label == Label::Ordinary)
        .all(|r| r.run.tests.is_some_and(|t| t.total == 8000)));
}

#[test]
fn calendars_are_busy_on_working_days_and_quiet_at_weekends() {
    let h = history(Scenario::RepeatedSlowBuild, 1);
    let mut weekday = 0usize;
    let mut weekend = 0usize;
    let mut last = None;
    for r in h.runs.iter().filter(|r| r.run.attempt == 1) {
        let t = r.run.started_at.expect("a start");
        assert!(last.is_none_or(|l| l <= t), "starts in order");
        last = Some(t);
        if matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            weekend += 1;
        } else {
            weekday += 1;
            assert!((8..19).contains(&t.hour()));
        }
    }
    let days = (last.expect("runs") - h.runs[0].run.started_at.expect("a start")).num_days();
    let per_weekday = weekday as f64 / (days as f64 * 5.0 / 7.0);
    let per_weekend_day = weekend as f64 / (days as f64 * 2.0 / 7.0);
    assert!((3.5..6.5).contains(&per_weekday), "{per_weekday}");
    assert!(per_weekend_day < 1.5, "{per_weekend_day}");
}

#[test]
fn ordinary_runs_have_flaky_tests_retries_and_no_big_failures() {
    let h = history(Scenario::NoisyButFine, 1);
    let retries = h.runs.iter().filter(|r| r.run.attempt == 2).count();
    let flaky = h
        .runs
        .iter()
        .filter(|r| r.run.tests.is_some_and(|t| t.failed > 0))
        .count();
    assert!(retries > 20, "{retries}");
    assert!(flaky > 80, "{flaky}");
    for c in corpus(2) {
        for r in c.runs.iter().filter(|r| r.label == Label::Ordinary) {
            let failed = r.run.tests.map_or(0, |t| t.failed);
            assert!(failed <= 3, "{}: {failed}", c.scenario.name());
            if r.run.attempt == 2 {
                assert_eq!(r.run.status, RunStatus::Succeeded);
            }
        }
    }
}

#[test]
fn the_generator_draws_sensible_numbers() {
    let mut rng = SplitMix::new(42);
    let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!(
        mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
        "{mean} {var}"
    );
    for _ in 0..1000 {
        let k = rng.between(3, 7);
        assert!((3..7).contains(&k));
        let u = rng.unit();
        assert!((0.0..1.0).contains(&u));
    }
    assert_eq!(rng.between(5, 5), 5);
    let p = spaced(&mut rng, 3, 120, 420, 40);
    assert!(
        p.windows(2).all(|w| w[1] - w[0] >= 40) && p[2] < 420,
        "{p:?}"
    );
}
