//! The SageMaker path end to end: a pipeline's stored history is exported
//! through the real `aws-sdk-s3` to the S3 stand-in; a Random Cut Forest
//! is trained on exactly the exported CSV rows (what a SageMaker training
//! job does with them) and serves as the SageMaker stand-in's model; the
//! same runs are then scored through `InvokeEndpoint`. The rows pipemedic
//! sends at inference must be, character for character, the rows it
//! exported, and the grades must be the embedded detector's within
//! [`GRADE_TOLERANCE`].

use std::sync::Arc;

use chrono::Utc;
use pipemedic::config::{AwsConfig, Config, DetectorBackend};
use pipemedic::detect::rcf::{Forest, ForestConfig};
use pipemedic::scoring::export::{self, Destination, ExportError, ExportRequest, Sink};
use reqwest::StatusCode;
use serde_json::Value;

use crate::detection::run_json;
use crate::fakes::s3::FakeS3;
use crate::fakes::sagemaker::FakeSagemaker;
use crate::helpers::{spawn_app, spawn_app_with, test_aws_settings, Db, TestApp};

const PIPELINE: &str = "checkout-service";
const RUNS: u32 = 140;
/// Runs whose build hangs (3.3 times the usual duration).
const SPIKES: [u32; 3] = [60, 90, 120];
/// Runs whose build is a third slower than usual.
const MODERATE: [u32; 2] = [75, 105];
const BUCKET: &str = "ci-anomaly";
const PREFIX: &str = "pipemedic/rcf";

/// How far a grade scored by the trained endpoint may lie from the
/// embedded detector's grade of the same run. Both forests see the same
/// rows, but one learned them as they came (with time decay) and the other
/// from the whole export at once, so raw scores differ (about 20% for the
/// hung builds here) and so may a grade between 0 and 1; whether a run is
/// abnormal must not. On this history every grade is equal (0 for normal
/// runs, 1 for the five slow ones).
const GRADE_TOLERANCE: f64 = 0.25;

fn run_of(i: u32) -> Value {
    let duration = if SPIKES.contains(&i) {
        1400.0
    } else if MODERATE.contains(&i) {
        560.0
    } else {
        420.0
    };
    run_json(PIPELINE, i, duration, u64::from(i % 3))
}

/// Posts every run, one per request; the verdicts in order.
async fn post_all(app: &TestApp) -> Vec<Value> {
    let mut verdicts = Vec::new();
    for i in 0..RUNS {
        let res = app.post_runs(run_of(i).to_string()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        verdicts.push(body["runs"][0]["verdict"].clone());
    }
    verdicts
}

fn grade(v: &Value) -> f64 {
    v["grade"]
        .as_f64()
        .unwrap_or_else(|| panic!("no grade: {v}"))
}

fn request(destination: Destination, pipelines: &[&str]) -> ExportRequest {
    ExportRequest {
        pipelines: pipelines.iter().map(|p| p.to_string()).collect(),
        since: None,
        destination,
        now: Utc::now(),
    }
}

async fn s3_sink(s3: &FakeS3, to: &str) -> (Destination, Sink) {
    let mut aws = AwsConfig::default();
    aws.endpoints.s3 = s3.url();
    let clients = test_aws_settings(&aws).clients().await;
    let destination = Destination::parse(to).unwrap();
    let sink = Sink::open(&destination, || async { clients.s3() }).await;
    (destination, sink)
}

async fn export_then_score_through_sagemaker_gives_the_embedded_grades(db: Db) {
    let Some(embedded) = spawn_app(db).await else {
        return;
    };
    let expected = post_all(&embedded).await;
    for i in SPIKES {
        assert!(
            grade(&expected[i as usize]) > 0.0,
            "run {i}: {}",
            expected[i as usize]
        );
    }

    // Export through the real S3 client to the stand-in.
    let s3 = FakeS3::start().await;
    s3.create_bucket(BUCKET);
    let (destination, sink) = s3_sink(&s3, &format!("s3://{BUCKET}/{PREFIX}/")).await;
    let detector = Config::default().detector;
    let mut progressed = 0;
    let manifest = export::export(
        &embedded.store,
        &detector,
        &request(destination, &[]),
        &sink,
        |n| progressed = n,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(progressed, u64::from(RUNS));
    let key = format!("{PREFIX}/rows/{PIPELINE}.csv");
    assert_eq!(
        s3.keys(BUCKET),
        [format!("{PREFIX}/manifest.json"), key.clone()]
    );
    let object = s3.object(BUCKET, &key).unwrap();
    assert_eq!(object.content_type, "text/csv");
    let csv = String::from_utf8(object.body).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let rows: Vec<Vec<f64>> = lines
        .iter()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    // The manifest, as stored, describes the rows.
    let stored: Value = serde_json::from_slice(
        &s3.object(BUCKET, &format!("{PREFIX}/manifest.json"))
            .unwrap()
            .body,
    )
    .unwrap();
    let dim = stored["hyperparameters"]["feature_dim"].as_u64().unwrap() as usize;
    assert_eq!(dim, 24);
    assert_eq!(stored["features"].as_array().unwrap().len(), dim);
    assert!(
        rows.iter().all(|r| r.len() == dim),
        "a row is not {dim} wide"
    );
    let p = &stored["pipelines"][0];
    assert_eq!(p["pipeline"], PIPELINE);
    assert_eq!(p["rows"].as_u64(), Some(rows.len() as u64));
    // Exactly the runs detection graded abnormal are left out.
    let abnormal = expected.iter().filter(|v| grade(v) > 0.0).count();
    assert!(abnormal >= SPIKES.len());
    assert_eq!(p["skipped_abnormal"].as_u64(), Some(abnormal as u64), "{p}");
    assert_eq!(p["skipped_warm_up"].as_u64(), Some(16 - 3), "{p}");
    assert_eq!(manifest.rows, rows.len());
    assert_eq!(rows.len(), RUNS as usize - 16 - abnormal);
    let duration = &p["normalisation"][0];
    assert_eq!(duration["metric"], "duration_s");
    assert!(
        (duration["mean"].as_f64().unwrap() - 420.0).abs() < 20.0,
        "{duration}"
    );

    // The endpoint: a forest trained on the exported rows only, as the
    // training job builds it (the manifest's hyperparameters, every row
    // at once, no time decay), then only scoring.
    let h = &stored["hyperparameters"];
    let mut forest = Forest::new(ForestConfig {
        dimensions: dim,
        shingle_size: 1,
        trees: h["num_trees"].as_u64().unwrap() as usize,
        sample_size: h["num_samples_per_tree"].as_u64().unwrap() as usize,
        time_decay: 0.0,
        seed: 7,
    });
    for row in &rows {
        forest.update(row);
    }
    let forest = Arc::new(forest);
    let sagemaker = FakeSagemaker::start().await;
    let model = forest.clone();
    sagemaker.score_with(move |row| model.score_point(row));

    // The same runs, scored through InvokeEndpoint.
    let url = sagemaker.url();
    let remote = spawn_app_with(db, move |c| {
        c.detector.backend = DetectorBackend::Sagemaker;
        c.detector.sagemaker_endpoint = "pipeline-rcf".into();
        c.aws.endpoints.sagemaker = url;
    })
    .await
    .unwrap();
    let scored = post_all(&remote).await;
    let requests = sagemaker.requests();
    // One request per run once a shingle is full.
    assert_eq!(requests.len(), RUNS as usize - 3);
    let mut exported = lines.iter();
    let mut compared = 0;
    for i in 0..RUNS as usize {
        let (e, s) = (grade(&expected[i]), grade(&scored[i]));
        assert_eq!(
            e > 0.0,
            s > 0.0,
            "run {i}: embedded {}, sagemaker {}",
            expected[i],
            scored[i]
        );
        assert!(
            (e - s).abs() <= GRADE_TOLERANCE,
            "run {i}: grade {e} embedded, {s} through SageMaker"
        );
        // Features, normalisation and shingling at inference are those of
        // the export: the row sent for each exported run is its CSV line.
        if i >= 16 && e == 0.0 {
            let sent = requests[i - 3].body.lines().next().unwrap().to_string();
            assert_eq!(Some(&sent.as_str()), exported.next(), "run {i}");
            compared += 1;
        }
    }
    assert_eq!(exported.next(), None);
    assert_eq!(compared, rows.len());
    // The stand-in did score with the trained forest.
    let spike = &requests[SPIKES[0] as usize - 3].rows()[0];
    assert!(
        (scored[SPIKES[0] as usize]["score"].as_f64().unwrap() - forest.score_point(spike)).abs()
            < 1e-9
    );
}

async fn a_missing_bucket_or_a_refused_write_is_a_clear_error(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..20 {
        app.post_runs(run_of(i).to_string()).await;
    }
    let s3 = FakeS3::start().await;
    s3.deny("locked");
    let detector = Config::default().detector;
    let (destination, sink) = s3_sink(&s3, "s3://no-such-bucket/x").await;
    let e = export::export(
        &app.store,
        &detector,
        &request(destination, &[]),
        &sink,
        |_| {},
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ExportError::NoSuchBucket { .. }), "{e}");
    assert!(
        e.to_string().contains("\"no-such-bucket\" does not exist"),
        "{e}"
    );

    let (destination, sink) = s3_sink(&s3, "s3://locked/exports").await;
    let e = export::export(
        &app.store,
        &detector,
        &request(destination, &[]),
        &sink,
        |_| {},
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ExportError::AccessDenied { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("s3://locked/exports/rows/checkout-service.csv"),
        "{shown}"
    );
    assert!(shown.contains("s3:PutObject"), "{shown}");
    // Nothing was written, and no manifest claims an export.
    assert!(s3.keys("locked").is_empty());
    assert!(s3
        .calls()
        .iter()
        .all(|(_, _, key)| !key.ends_with("manifest.json")));

    let (destination, sink) = s3_sink(&s3, "s3://locked/exports").await;
    let e = export::export(
        &app.store,
        &detector,
        &request(destination, &["nope"]),
        &sink,
        |_| {},
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ExportError::UnknownPipeline(_)), "{e}");
}

/// Runs the real binary with `env` added to its environment only (AWS
/// credentials for the stand-in; nothing read from the host's AWS files).
fn pipemedic(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .args(args)
        .env_remove("PIPEMEDIC_CONFIG")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("pipemedic runs")
}

async fn the_command_writes_a_directory_or_s3_and_says_what_went_wrong(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for i in 0..40 {
        app.post_runs(run_of(i).to_string()).await;
    }
    let s3 = FakeS3::start().await;
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {:?}\n[aws]\nregion = \"eu-west-1\"\n[aws.endpoints]\ns3 = {:?}\n",
            app._db.url,
            s3.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out_dir = dir.path().join("export");
    let to = format!("file:{}", out_dir.display());
    let out = pipemedic(&["export", "--config", config, "--to", &to, "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(printed, written);
    let csv = std::fs::read_to_string(out_dir.join("rows/checkout-service.csv")).unwrap();
    assert_eq!(printed["rows"].as_u64(), Some(csv.lines().count() as u64));
    assert_eq!(csv.lines().count(), 40 - 16);
    assert!(csv.lines().all(|l| l.split(',').count() == 24), "{csv}");
    let leftovers: Vec<_> = std::fs::read_dir(out_dir.join("rows"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
    ];
    let to = format!("s3://{BUCKET}/{PREFIX}");
    let out = pipemedic(&["export", "--config", config, "--to", &to], &credentials);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("checkout-service: 24 rows (40 runs; skipped 13 in warm-up, 0 abnormal, 0 before --since) -> s3://{BUCKET}/{PREFIX}/rows/checkout-service.csv")),
        "{stdout}"
    );
    assert!(stdout.contains("feature_dim 24"), "{stdout}");
    let csv_s3 = s3
        .object(BUCKET, &format!("{PREFIX}/rows/checkout-service.csv"))
        .unwrap();
    assert_eq!(String::from_utf8(csv_s3.body).unwrap(), csv);

    let out = pipemedic(
        &[
            "export",
            "--config",
            config,
            "--to",
            "s3://missing-bucket/x",
        ],
        &credentials,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"missing-bucket\" does not exist"),
        "{stderr}"
    );

    let out = pipemedic(
        &["export", "--config", config, "--to", "gs://bucket/x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--to \"gs://bucket/x\""), "{stderr}");
}

crate::on_both_databases!(
    export_then_score_through_sagemaker_gives_the_embedded_grades,
    a_missing_bucket_or_a_refused_write_is_a_clear_error,
    the_command_writes_a_directory_or_s3_and_says_what_went_wrong,
);
