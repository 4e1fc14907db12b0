//! `pipemedic export`: training rows for SageMaker's built-in Random Cut
//! Forest, written to S3 or a directory (see [`crate::scoring::export`]).

use std::path::Path;

use chrono::Utc;

use super::detection::progress_bar;
use super::{load_config, open_store, parse_since, Exit};
use crate::aws::AwsSettings;
use crate::config::Env;
use crate::scoring::export::{self, Destination, ExportError, ExportRequest, Sink};

/// What `pipemedic export` was asked to do.
#[derive(Debug)]
pub(super) struct ExportOptions {
    pub to: String,
    pub pipelines: Vec<String>,
    pub since: Option<String>,
    pub json: bool,
}

pub(super) async fn export(
    path: Option<&Path>,
    env: &Env,
    options: ExportOptions,
) -> Result<(), Exit> {
    let destination = Destination::parse(&options.to).map_err(|e| Exit::BadInput(e.to_string()))?;
    let now = Utc::now();
    let since = options
        .since
        .as_deref()
        .map(|raw| parse_since(raw, now))
        .transpose()
        .map_err(Exit::BadInput)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let total = store
        .count_runs()
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    let bar = if options.json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar(total.max(0) as u64, "replaying runs")
    };
    let aws = AwsSettings::from_config(&loaded.config.aws);
    let sink = Sink::open(&destination, || async { aws.clients().await.s3() }).await;
    let request = ExportRequest {
        pipelines: options.pipelines,
        since,
        destination: destination.clone(),
        now,
    };
    let result = export::export(
        &store,
        &loaded.config.detector,
        &request,
        &sink,
        |n| bar.set_position(n),
        |p| {
            if !options.json {
                bar.suspend(|| {
                    println!(
                        "{}: {} rows ({} runs; skipped {} in warm-up, {} abnormal, {} before --since) -> {}",
                        p.pipeline,
                        p.rows,
                        p.runs,
                        p.skipped_warm_up,
                        p.skipped_abnormal,
                        p.skipped_before_since,
                        destination.location_of(&p.object)
                    )
                });
            }
        },
    )
    .await;
    bar.finish_and_clear();
    store.close().await;
    let manifest = match result {
        Ok(m) => m,
        Err(e @ ExportError::UnknownPipeline(_)) => return Err(Exit::BadInput(e.to_string())),
        Err(e) => return Err(Exit::Failure(e.into())),
    };
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&manifest).map_err(|e| Exit::Failure(e.into()))?
        );
        return Ok(());
    }
    let h = &manifest.hyperparameters;
    println!(
        "{} rows from {} pipelines; manifest -> {} (feature_dim {}, num_trees {}, num_samples_per_tree {})",
        manifest.rows,
        manifest.pipelines.len(),
        destination.location_of(export::MANIFEST),
        h.feature_dim,
        h.num_trees,
        h.num_samples_per_tree
    );
    Ok(())
}
