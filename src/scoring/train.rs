//! Rebuilding models from stored history (`pipemedic train`, the scheduled
//! retraining) and replaying history to see what would have alerted
//! (`pipemedic backtest`).
//!
//! Training skips the runs detection graded abnormal, so a model learns
//! what the pipeline looks like when it is healthy; a lasting change of
//! normal is still learned, because detection stops grading it abnormal
//! once it has lasted (see [`crate::detect::Detector`]).

use chrono::{DateTime, Utc};

use super::pipeline::PipelineModel;
use crate::config::DetectorConfig;
use crate::store::{Store, StoreError};

/// What a rebuild learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainReport {
    pub pipeline: String,
    pub learned: usize,
    pub skipped_abnormal: usize,
}

/// Builds a fresh model of `pipeline` from its whole stored history;
/// `progress` is called with the runs done so far.
pub async fn rebuild(
    store: &Store,
    pipeline: &str,
    config: &DetectorConfig,
    mut progress: impl FnMut(usize),
) -> Result<(PipelineModel, TrainReport), StoreError> {
    let history = store.history(pipeline).await?;
    let abnormal = store.abnormal_run_pks(pipeline).await?;
    let rules = config.rules_for(pipeline);
    let mut model = PipelineModel::new(pipeline, config.sensitivity);
    let mut report = TrainReport {
        pipeline: pipeline.to_string(),
        learned: 0,
        skipped_abnormal: 0,
    };
    for (i, stored) in history.iter().enumerate() {
        if abnormal.contains(&stored.pk) {
            report.skipped_abnormal += 1;
        } else {
            model.observe(&stored.run, &rules);
            report.learned += 1;
        }
        model.last_run_pk = model.last_run_pk.max(stored.pk);
        progress(i + 1);
    }
    Ok((model, report))
}

/// What replaying a pipeline's history would have alerted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BacktestRow {
    pub pipeline: String,
    /// Runs before `since`, used to learn.
    pub trained_on: usize,
    /// Runs at or after `since`, replayed.
    pub replayed: usize,
    /// Replayed runs graded abnormal.
    pub abnormal_runs: usize,
    /// Alerts: abnormal stretches (a new one after at least one normal run).
    pub alerts: usize,
}

/// Learns a pipeline's runs before `since`, then replays the rest as live
/// detection would have seen them. Nothing is written.
pub async fn backtest(
    store: &Store,
    pipeline: &str,
    since: DateTime<Utc>,
    config: &DetectorConfig,
) -> Result<BacktestRow, StoreError> {
    let history = store.history(pipeline).await?;
    let rules = config.rules_for(pipeline);
    let mut model = PipelineModel::new(pipeline, config.sensitivity);
    let mut row = BacktestRow {
        pipeline: pipeline.to_string(),
        trained_on: 0,
        replayed: 0,
        abnormal_runs: 0,
        alerts: 0,
    };
    let mut in_anomaly = false;
    for stored in &history {
        let at = stored.run.event_time().unwrap_or(stored.ingested_at);
        let verdict = model.observe(&stored.run, &rules);
        if at < since {
            row.trained_on += 1;
            continue;
        }
        row.replayed += 1;
        if verdict.is_anomalous() {
            row.abnormal_runs += 1;
            if !in_anomaly {
                row.alerts += 1;
            }
            in_anomaly = true;
        } else if !verdict.warming_up {
            in_anomaly = false;
        }
    }
    Ok(row)
}
