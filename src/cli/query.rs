//! Reading stored history: `pipemedic health`, `pipemedic ask` and
//! `pipemedic audit`.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{load_config, open_store, parse_since, Exit};
use crate::config::{self, Env};

pub(super) async fn health(
    path: Option<&Path>,
    env: &Env,
    pipeline: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let now = Utc::now();
    let names = match &pipeline {
        Some(p) => vec![p.clone()],
        None => store
            .pipelines()
            .await
            .map_err(|e| Exit::Failure(e.into()))?,
    };
    let mut rows = Vec::new();
    for name in &names {
        let open = store
            .count_active_incidents(name)
            .await
            .map_err(|e| Exit::Failure(e.into()))?;
        match crate::health::pipeline_health(&store, name, now, open)
            .await
            .map_err(|e| Exit::Failure(e.into()))?
        {
            Some(h) => rows.push(h),
            None => {
                return Err(Exit::BadInput(format!(
                    "no runs stored for pipeline {name:?}"
                )));
            }
        }
    }
    store.close().await;
    if json {
        let out = if pipeline.is_some() && rows.len() == 1 {
            serde_json::to_string_pretty(&rows[0])
        } else {
            serde_json::to_string_pretty(&rows)
        };
        println!("{}", out.map_err(|e| Exit::Failure(e.into()))?);
    } else if rows.is_empty() {
        println!("No runs stored yet. Send some with POST /v1/runs or `pipemedic ingest FILE`.");
    } else {
        print!("{}", crate::health::render_table(&rows));
    }
    Ok(())
}

pub(super) async fn ask(
    path: Option<&Path>,
    env: &Env,
    question: &str,
    json: bool,
    at: Option<DateTime<Utc>>,
) -> Result<(), Exit> {
    if question.trim().is_empty() {
        return Err(Exit::BadInput(
            "the question is empty; try `pipemedic ask \"how is PIPELINE doing?\"`".into(),
        ));
    }
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let bedrock = if loaded.config.ask.backend == config::AskBackend::Bedrock {
        let aws = crate::aws::AwsSettings::from_config(&loaded.config.aws)
            .load()
            .await;
        Some(aws.bedrock())
    } else {
        None
    };
    let asker = crate::ask::Asker::from_config(
        &loaded.config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        bedrock,
    )
    .map_err(|e| Exit::BadInput(e.to_string()))?;
    let answer = asker
        .ask(
            question,
            at.unwrap_or_else(Utc::now),
            crate::ask::Visibility::All,
        )
        .await
        .map_err(|e| Exit::Failure(e.into()));
    store.close().await;
    let answer = answer?;
    if json {
        let out = serde_json::to_string_pretty(&answer).map_err(|e| Exit::Failure(e.into()))?;
        println!("{out}");
    } else {
        print!("{}", crate::ask::render_text(&answer));
    }
    Ok(())
}

pub(super) async fn audit(path: Option<&Path>, env: &Env, since: &str) -> Result<(), Exit> {
    let since = parse_since(since, Utc::now()).map_err(Exit::BadInput)?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let entries = store
        .audit_since(since)
        .await
        .map_err(|e| Exit::Failure(e.into()))?;
    for e in entries {
        println!(
            "{}",
            serde_json::to_string(&e).map_err(|e| Exit::Failure(e.into()))?
        );
    }
    store.close().await;
    Ok(())
}
