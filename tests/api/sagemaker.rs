//! The SageMaker backend through the API: with `detector.backend =
//! "sagemaker"` runs are scored by a SageMaker RCF endpoint (the local
//! stand-in, reached through the real `aws-sdk-sagemakerruntime`) and
//! graded by pipemedic's threshold; throttling is retried, repeated failures
//! fall back to the embedded forest for the configured cool-down, and a
//! malformed answer is never taken for a score.

use pipemedic::config::DetectorBackend;
use reqwest::StatusCode;
use serde_json::Value;

use crate::detection::run_json;
use crate::fakes::sagemaker::FakeSagemaker;
use crate::helpers::{spawn_app_with, Db, TestApp};

const ENDPOINT: &str = "pipeline-rcf";
/// Six modelled metrics, four runs per shingle.
const COLUMNS: usize = 24;
const PIPELINE: &str = "checkout-service";
const HISTORY: u32 = 48;

/// Scores a row by how far the newest run's normalised duration (the first
/// of the last six columns) lies from normal: about 1 for usual runs.
fn duration_distance(row: &[f64]) -> f64 {
    1.0 + 0.1 * row[row.len() - 6].abs()
}

/// Scores a row by the farthest normalised duration of any run in it: a
/// spike keeps every shingle it is in far from normal.
fn shingle_distance(row: &[f64]) -> f64 {
    1.0 + 0.1 * row.iter().step_by(6).fold(0.0, |m, d| d.abs().max(m))
}

async fn start(db: Db, retry_after_s: u64) -> (TestApp, FakeSagemaker) {
    let fake = FakeSagemaker::start().await;
    fake.score_with(duration_distance);
    let url = fake.url();
    let app = spawn_app_with(db, move |c| {
        c.detector.backend = DetectorBackend::Sagemaker;
        c.detector.sagemaker_endpoint = ENDPOINT.into();
        c.detector.sagemaker_retry_after_s = retry_after_s;
        c.aws.endpoints.sagemaker = url;
    })
    .await
    .unwrap();
    (app, fake)
}

async fn post_run(app: &TestApp, i: u32, duration_s: f64, failed: u64) -> Value {
    let res = app
        .post_runs(run_json(PIPELINE, i, duration_s, failed).to_string())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["runs"][0]["verdict"].clone()
}

/// Normal history, one run per request; none may be flagged.
async fn history(app: &TestApp) {
    for i in 0..HISTORY {
        let v = post_run(app, i, 420.0, u64::from(i % 3)).await;
        assert_eq!(v["grade"].as_f64(), Some(0.0), "run {i}: {v}");
    }
}

async fn fallbacks(app: &TestApp, reason: &str) -> u64 {
    let text = app.metrics_text().await;
    let prefix = format!("pipemedic_detector_fallbacks_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Scores travel as JSON text twice; equal up to the last digit.
fn assert_close(actual: f64, expected: f64, context: impl std::fmt::Display) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} is not the endpoint's {expected}: {context}"
    );
}

/// The largest normalised value in the last row the stand-in received.
fn spike_row_max(fake: &FakeSagemaker) -> f64 {
    let last = fake.requests().pop().expect("a request");
    last.rows()[0].iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// The score the stand-in gave the last row it received.
fn last_score(fake: &FakeSagemaker) -> f64 {
    let last = fake.requests().pop().expect("a request");
    fake.score_of(&last.rows()[0])
}

async fn a_spike_is_graded_from_the_endpoints_scores(db: Db) {
    let (app, fake) = start(db, 300).await;
    fake.score_with(shingle_distance);
    history(&app).await;
    let requests = fake.requests();
    // The first runs fill the shingle; every later run is one CSV row.
    assert_eq!(requests.len(), HISTORY as usize - 3);
    for r in &requests {
        assert_eq!(r.endpoint, ENDPOINT);
        assert_eq!(r.content_type, "text/csv");
        assert_eq!(r.accept, "application/json");
        let rows = r.rows();
        assert_eq!(rows.len(), 1, "{}", r.body);
        assert_eq!(rows[0].len(), COLUMNS, "{}", r.body);
    }
    let v = post_run(&app, HISTORY, 1300.0, 0).await;
    assert!(v["grade"].as_f64().unwrap() > 0.0, "{v}");
    assert_close(v["score"].as_f64().unwrap(), last_score(&fake), &v);
    assert!(v["anomaly_id"].as_i64().is_some(), "{v}");
    let d = &v["deviations"][0];
    assert_eq!(d["metric"], "duration_s", "{v}");
    assert_eq!(d["direction"], "up", "{v}");
    let expected = d["expected"].as_f64().unwrap();
    assert!((expected - 420.0).abs() < 30.0, "expected about 420: {v}");
    assert_eq!(fake.requests().len(), HISTORY as usize - 2);
    // The spike is not learned: the shingles after it hold a stand-in at
    // the usual level in its place, so each later run is one row with no
    // trace of the spike, judged on normal context, and normal runs close
    // the anomaly.
    let spike_z = spike_row_max(&fake);
    for k in 1..=4 {
        let v = post_run(&app, HISTORY + k, 420.0, 0).await;
        let last = fake.requests().pop().unwrap();
        let rows = last.rows();
        assert_eq!(rows.len(), 1, "run {k}: {}", last.body);
        assert_eq!(rows[0].len(), COLUMNS);
        let largest = rows[0].iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(
            largest * 4.0 < spike_z,
            "run {k}: the spike ({spike_z}) is not in the shingle: {}",
            last.body
        );
        assert_close(v["score"].as_f64().unwrap(), fake.score_of(&rows[0]), &v);
        assert_eq!(v["grade"].as_f64(), Some(0.0), "run {k}: {v}");
    }
    let anomaly = app
        .store
        .anomaly(v["anomaly_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anomaly.status, pipemedic::domain::AnomalyStatus::Closed);
    assert_eq!(fallbacks(&app, "error").await, 0);
    assert_eq!(fallbacks(&app, "circuit_open").await, 0);
}

async fn throttling_is_retried_and_a_model_error_is_not(db: Db) {
    let (app, fake) = start(db, 300).await;
    history(&app).await;
    for (n, status) in [(HISTORY, 400), (HISTORY + 1, 429)] {
        let before = fake.requests().len();
        fake.fail_next(1, status, "ThrottlingException");
        let v = post_run(&app, n, 420.0, 0).await;
        assert_eq!(
            fake.requests().len(),
            before + 2,
            "one retry after {status}"
        );
        assert_close(v["score"].as_f64().unwrap(), last_score(&fake), &v);
        assert_eq!(v["grade"].as_f64(), Some(0.0), "{v}");
    }
    assert_eq!(fallbacks(&app, "error").await, 0);
    // The model's own error will not go away by asking again: one attempt,
    // and the run is scored by the embedded forest.
    let before = fake.requests().len();
    fake.fail_next(1, 424, "ModelError");
    let v = post_run(&app, HISTORY + 2, 420.0, 0).await;
    assert_eq!(fake.requests().len(), before + 1, "not retried");
    assert!(v["score"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(fallbacks(&app, "error").await, 1);
    let v = post_run(&app, HISTORY + 3, 420.0, 0).await;
    assert_eq!(fake.requests().len(), before + 2);
    assert_close(v["score"].as_f64().unwrap(), last_score(&fake), &v);
}

async fn repeated_failures_fall_back_to_the_embedded_forest_until_the_cool_down_ends(db: Db) {
    let (app, fake) = start(db, 60).await;
    history(&app).await;
    // Three runs whose calls fail every attempt (three each): each is
    // scored by the embedded forest, and the third opens the circuit.
    fake.fail_next(9, 500, "InternalFailure");
    let mut n = HISTORY;
    for k in 1..=3 {
        let before = fake.requests().len();
        let v = post_run(&app, n, 420.0, 0).await;
        n += 1;
        assert_eq!(fake.requests().len(), before + 3, "three attempts");
        assert!(
            v["score"].as_f64().unwrap() > 0.0,
            "a verdict all the same: {v}"
        );
        assert_eq!(v["grade"].as_f64(), Some(0.0), "{v}");
        assert_eq!(fallbacks(&app, "error").await, k);
    }
    // While the circuit is open, SageMaker is not called at all; the
    // embedded forest, which kept learning, still flags a spike.
    let before = fake.requests().len();
    let v = post_run(&app, n, 420.0, 0).await;
    n += 1;
    assert!(v["score"].as_f64().unwrap() > 0.0, "{v}");
    let spike = post_run(&app, n, 1500.0, 150).await;
    n += 1;
    assert!(spike["grade"].as_f64().unwrap() > 0.0, "{spike}");
    assert_eq!(fake.requests().len(), before);
    assert_eq!(fallbacks(&app, "circuit_open").await, 2);
    // Back to normal runs, then past the cool-down: SageMaker scores again.
    for _ in 0..4 {
        post_run(&app, n, 420.0, 0).await;
        n += 1;
    }
    assert_eq!(fake.requests().len(), before);
    app.clock_advance_minutes(2);
    let v = post_run(&app, n, 420.0, 0).await;
    n += 1;
    assert_eq!(fake.requests().len(), before + 1);
    assert_close(v["score"].as_f64().unwrap(), last_score(&fake), &v);
    let v = post_run(&app, n, 420.0, 0).await;
    assert_eq!(fake.requests().len(), before + 2);
    assert_close(v["score"].as_f64().unwrap(), last_score(&fake), &v);
    assert_eq!(fallbacks(&app, "error").await, 3);
    assert_eq!(fallbacks(&app, "circuit_open").await, 6);
}

async fn a_malformed_answer_is_a_failure_never_a_score(db: Db) {
    let (app, fake) = start(db, 300).await;
    history(&app).await;
    let answers = [
        r#"{"scores":[{"score": 99.0}"#,
        r#"{"scores":[{"score": 99.0},{"score": 99.0}]}"#,
        r#"{"scores":[{"score": "99"}]}"#,
    ];
    for (k, answer) in answers.iter().enumerate() {
        let before = fake.requests().len();
        fake.reply_raw_next(answer);
        let v = post_run(&app, HISTORY + k as u32, 420.0, 0).await;
        assert_eq!(fake.requests().len(), before + 1, "not retried: {answer}");
        assert!(v["score"].as_f64().unwrap() < 99.0, "{answer}: {v}");
        assert_eq!(v["grade"].as_f64(), Some(0.0), "{answer}: {v}");
        assert_eq!(fallbacks(&app, "error").await, k as u64 + 1);
    }
    // Three failures in a row opened the circuit.
    let before = fake.requests().len();
    post_run(&app, HISTORY + 3, 420.0, 0).await;
    assert_eq!(fake.requests().len(), before);
    assert_eq!(fallbacks(&app, "circuit_open").await, 1);
}

crate::on_both_databases!(
    a_spike_is_graded_from_the_endpoints_scores,
    throttling_is_retried_and_a_model_error_is_not,
    repeated_failures_fall_back_to_the_embedded_forest_until_the_cool_down_ends,
    a_malformed_answer_is_a_failure_never_a_score,
);
