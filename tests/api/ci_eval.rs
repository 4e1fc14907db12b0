//! Detection quality on CI-shaped histories, through the API: the seeded
//! corpus of `pipemedic::evaluate::corpus` is posted one run per request
//! to the real application, and the verdicts must find at least 95 % of
//! the labelled problems with at most 2 false alarms per 1,000 ordinary
//! runs (the design's floor), for each of seeds 1, 2 and 3.

use pipemedic::evaluate::corpus::{corpus, History};
use pipemedic::evaluate::drive::{grades, Driver};
use pipemedic::evaluate::score::{self, Mark, ScenarioResult};

use crate::helpers::{spawn_app, Db, INGEST_TOKEN};

const MIN_RECALL: f64 = 0.95;
const MAX_FALSE_ALARMS_PER_1000: f64 = 2.0;

/// The corpus of `seed` through a fresh application; one result per history.
async fn evaluate(seed: u64) -> (Vec<History>, Vec<ScenarioResult>) {
    let app = spawn_app(Db::Sqlite).await.expect("SQLite app");
    let histories = corpus(seed);
    let driver = Driver::new(app.http.clone(), &app.base, INGEST_TOKEN);
    let verdicts = driver.grade_all(&histories).await.expect("runs accepted");
    for (h, v) in histories.iter().zip(&verdicts) {
        assert_eq!(v.len(), h.runs.len());
        assert!(
            v.iter().all(Option::is_some),
            "{}: a run came back without a verdict",
            h.pipeline
        );
    }
    let results = histories
        .iter()
        .zip(&verdicts)
        .map(|(h, v)| score::score_history(h, &grades(v)))
        .collect();
    (histories, results)
}

/// What went wrong, per run, for the failure message.
fn failures(histories: &[History], results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for (h, r) in histories.iter().zip(results) {
        for (i, m) in r.marks.iter().enumerate() {
            let kind = match m {
                Mark::Missed => "missed",
                Mark::FalseAlarm => "false alarm",
                _ => continue,
            };
            out.push_str(&format!(
                "\n  {} #{i} run {}: {kind} {}",
                h.scenario.name(),
                h.runs[i].run.run_id,
                h.runs[i].what
            ));
        }
    }
    out
}

async fn meets_the_floor(seed: u64) {
    let (histories, results) = evaluate(seed).await;
    let total = score::total(&results);
    assert!(total.problems >= 20, "seed {seed}: {total:?}");
    assert!(total.ordinary >= 4000, "seed {seed}: {total:?}");
    let recall = total.recall().unwrap_or(0.0);
    let fa = total.false_alarms_per_1000().unwrap_or(f64::INFINITY);
    assert!(
        recall >= MIN_RECALL && fa <= MAX_FALSE_ALARMS_PER_1000,
        "seed {seed}: recall {:.1}% (floor {:.0}%), {fa:.1} false alarms per 1,000 \
         ordinary runs (ceiling {MAX_FALSE_ALARMS_PER_1000}); {total:?}{}",
        recall * 100.0,
        MIN_RECALL * 100.0,
        failures(&histories, &results)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_1_meets_the_detection_floor() {
    meets_the_floor(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_2_meets_the_detection_floor() {
    meets_the_floor(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_3_meets_the_detection_floor() {
    meets_the_floor(3).await;
}
