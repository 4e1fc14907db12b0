//! Detection: `pipemedic score`, `train`, `backtest` and
//! `accept-baseline`.

use std::path::Path;

use chrono::Utc;

use super::{load_config, open_store, parse_since, Exit};
use crate::config::Env;

pub(super) fn score(
    shingle: usize,
    trees: usize,
    sample_size: usize,
    seed: u64,
    sensitivity: f64,
    warm_up: Option<u64>,
    explain: bool,
) -> Result<(), Exit> {
    let mut problems = Vec::new();
    if shingle == 0 || shingle > 64 {
        problems.push("--shingle must be 1 to 64");
    }
    if trees == 0 || trees > 1000 {
        problems.push("--trees must be 1 to 1000");
    }
    if !(4..=4096).contains(&sample_size) {
        problems.push("--sample-size must be 4 to 4096");
    }
    if !(sensitivity > 0.0 && sensitivity <= 10.0) {
        problems.push("--sensitivity must be in (0, 10]");
    }
    if !problems.is_empty() {
        return Err(Exit::BadInput(problems.join("\n")));
    }
    let mut config = crate::detect::DetectorConfig {
        shingle_size: shingle,
        trees,
        sample_size,
        seed,
        sensitivity,
        ..crate::detect::DetectorConfig::default()
    };
    if let Some(w) = warm_up {
        config.warm_up = w;
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::scoring::filter::score_stream(stdin, stdout, config, explain) {
        Ok(_) => Ok(()),
        Err(e @ crate::scoring::filter::FilterError::Input { .. }) => {
            Err(Exit::BadInput(format!("stdin: {e}")))
        }
        Err(e) => Err(Exit::Failure(e.into())),
    }
}

pub(super) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

pub(super) async fn train(
    path: Option<&Path>,
    env: &Env,
    pipeline: Option<String>,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let names = named_or_all(&store, pipeline).await?;
    let total = store
        .count_runs()
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    let bar = progress_bar(total.max(0) as u64, "learning runs");
    // Pipelines are rebuilt on every core at once, each by one task; models
    // are independent, so the order does not matter.
    let started = std::time::Instant::now();
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let detector = std::sync::Arc::new(loaded.config.detector.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = names.into_iter();
    let (mut pipelines, mut runs) = (0usize, 0usize);
    loop {
        while tasks.len() < parallel {
            let Some(name) = names.next() else { break };
            let (store, detector, bar) = (store.clone(), detector.clone(), bar.clone());
            tasks.spawn(async move {
                let mut seen = 0;
                let (model, report) =
                    crate::scoring::train::rebuild(&store, &name, &detector, |n| {
                        bar.inc((n - seen) as u64);
                        seen = n;
                    })
                    .await?;
                if report.learned + report.skipped_abnormal > 0 {
                    crate::scoring::bank::save(&store, &name, &model).await?;
                }
                Ok::<_, crate::store::StoreError>(report)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let report = joined
            .map_err(|e| Exit::Failure(e.into()))?
            .map_err(|e| Exit::Failure(e.into()))?;
        let name = &report.pipeline;
        if report.learned + report.skipped_abnormal == 0 {
            bar.suspend(|| eprintln!("{name}: no finished runs stored"));
            continue;
        }
        pipelines += 1;
        runs += report.learned + report.skipped_abnormal;
        bar.suspend(|| {
            println!(
                "{name}: learned {} runs, skipped {} graded abnormal",
                report.learned, report.skipped_abnormal
            )
        });
    }
    bar.finish_and_clear();
    store.close().await;
    eprintln!(
        "trained {pipelines} pipelines on {runs} runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(super) async fn backtest(
    path: Option<&Path>,
    env: &Env,
    since: &str,
    pipeline: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let since = parse_since(since, Utc::now()).map_err(Exit::BadInput)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let names = named_or_all(&store, pipeline).await?;
    let mut rows = Vec::new();
    for name in &names {
        rows.push(
            crate::scoring::train::backtest(&store, name, since, &loaded.config.detector)
                .await
                .map_err(|e| Exit::Failure(e.into()))?,
        );
    }
    store.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Exit::Failure(e.into()))?
        );
        return Ok(());
    }
    println!("since {}", since.format("%Y-%m-%d %H:%M UTC"));
    let width = rows
        .iter()
        .map(|r| r.pipeline.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:>10}  {:>8}  {:>8}  {:>6}",
        "PIPELINE", "TRAINED ON", "REPLAYED", "ABNORMAL", "ALERTS"
    );
    for r in &rows {
        println!(
            "{:<width$}  {:>10}  {:>8}  {:>8}  {:>6}",
            r.pipeline, r.trained_on, r.replayed, r.abnormal_runs, r.alerts
        );
    }
    let alerts: usize = rows.iter().map(|r| r.alerts).sum();
    println!(
        "{alerts} alerts would have fired across {} pipelines",
        rows.len()
    );
    Ok(())
}

pub(super) async fn accept_baseline(
    path: Option<&Path>,
    env: &Env,
    pipeline: &str,
    metric: Option<&str>,
    by: &str,
) -> Result<(), Exit> {
    if let Some(m) = metric {
        if !crate::domain::BUILTIN_METRICS.contains(&m) {
            return Err(Exit::BadInput(format!(
                "{m:?} is not a modelled metric; one of: {}",
                crate::domain::BUILTIN_METRICS.join(", ")
            )));
        }
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    if store
        .last_run(pipeline)
        .await
        .map_err(|e| Exit::Failure(e.into()))?
        .is_none()
    {
        return Err(Exit::BadInput(format!(
            "no runs stored for pipeline {pipeline:?}"
        )));
    }
    let now = Utc::now();
    let mut tx = store
        .begin_write()
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    let id = tx
        .request_baseline_reset(pipeline, metric, by, now)
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    tx.audit(
        now,
        "baseline.accepted",
        &format!("pipeline/{pipeline}"),
        by,
        &serde_json::json!({"metric": metric, "request": id}),
    )
    .await
    .map_err(|e| Exit::Failure(e.into()))?;
    tx.commit().await.map_err(|e| Exit::Failure(e.into()))?;
    store.close().await;
    println!(
        "{pipeline}: the current level of {} is the new normal from its next run on.",
        metric.unwrap_or("every metric")
    );
    Ok(())
}

/// The one pipeline asked for, or every stored pipeline.
async fn named_or_all(
    store: &crate::store::Store,
    pipeline: Option<String>,
) -> Result<Vec<String>, Exit> {
    match pipeline {
        Some(p) => Ok(vec![p]),
        None => store.pipelines().await.map_err(|e| Exit::Failure(e.into())),
    }
}
