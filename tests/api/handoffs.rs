//! The hand-off from scoring to incidents never waits: with an incident
//! queue that is full and never read, every stored run is still scored
//! (its verdict comes back to the caller), and each hand-off that did not
//! fit is counted in `pipemedic_handoffs_dropped_total{queue="scored"}`.

use std::sync::Arc;

use pipemedic::clock::ManualClock;
use pipemedic::domain::{Run, RunSource, RunStatus};
use pipemedic::ingest::IngestService;
use pipemedic::metrics::Metrics;
use pipemedic::scoring::{DetectionService, DetectionSettings};
use tokio::sync::mpsc;

use crate::helpers::{t, Db, TestDb};
use crate::on_both_databases;

fn run(i: i64) -> Run {
    let start = t("2026-11-20T00:00:00Z") + chrono::Duration::hours(i);
    let mut run = Run::new("queue-service", format!("r{i}"), RunStatus::Succeeded);
    run.started_at = Some(start);
    run.finished_at = Some(start + chrono::Duration::seconds(120 + i % 5));
    run
}

async fn a_full_incident_queue_never_holds_up_scoring(db: Db) {
    let Some(db) = TestDb::new(db).await else {
        return;
    };
    let store = db.store().await;
    let metrics = Arc::new(Metrics::new());
    let clock = Arc::new(ManualClock::new(t("2026-11-21T00:00:00Z")));
    // Room for one scored run, and nobody ever takes it.
    let (scored, _never_read) = mpsc::channel(1);
    let detection = DetectionService::start(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        DetectionSettings {
            shards: 1,
            ..DetectionSettings::default()
        },
        Some(scored),
    );
    let ingest = IngestService::with_detection(store, metrics.clone(), clock, Some(detection));
    for i in 0..5 {
        let report = ingest
            .accept_runs(RunSource::Generic, None, &[run(i)], true)
            .await
            .unwrap();
        assert!(
            report.runs[0].verdict.is_some(),
            "run {i} was not scored: scoring waited on the incident queue"
        );
    }
    assert_eq!(
        metrics.counter("pipemedic_handoffs_dropped_total", &[("queue", "scored")]),
        4
    );
}

on_both_databases!(a_full_incident_queue_never_holds_up_scoring);
