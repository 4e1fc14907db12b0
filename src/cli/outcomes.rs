//! `pipemedic outcomes [--pipeline P] [--json]`: each fix's track record per
//! pipeline and playbook action, read from the store the configuration
//! names (no server or token needed). `--json` prints the same body as
//! `GET /v1/outcomes`: `{"outcomes": [{"pipeline", "playbook", "action",
//! "offered", "approved", "rejected", "expired", "healed", "not_healed",
//! "median_minutes_to_heal", ...}]}`.

use std::path::Path;

use super::{load_config, open_store, Exit};
use crate::config::Env;
use crate::domain::TrackRecord;

pub(super) async fn outcomes(
    path: Option<&Path>,
    env: &Env,
    pipeline: Option<&str>,
    json: bool,
) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let records = store.track_records(pipeline).await;
    store.close().await;
    let records = records.map_err(|e| Exit::Failure(e.into()))?;
    if json {
        let body = serde_json::json!({ "outcomes": records });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).map_err(|e| Exit::Failure(e.into()))?
        );
    } else {
        print!("{}", table(&records, pipeline));
    }
    Ok(())
}

/// The records as a terminal table, each with its sentence below it.
pub fn table(records: &[TrackRecord], pipeline: Option<&str>) -> String {
    if records.is_empty() {
        return match pipeline {
            Some(p) => format!("No plan was offered on {p} yet.\n"),
            None => "No plan was offered yet.\n".to_string(),
        };
    }
    let mut out = format!(
        "{:<24} {:<40} {:>7} {:>8} {:>8} {:>7} {:>6} {:>10} {:>10}\n",
        "PIPELINE",
        "PLAYBOOK/ACTION",
        "OFFERED",
        "APPROVED",
        "REJECTED",
        "EXPIRED",
        "HEALED",
        "NOT_HEALED",
        "MEDIAN_MIN"
    );
    for r in records {
        out.push_str(&format!(
            "{:<24} {:<40} {:>7} {:>8} {:>8} {:>7} {:>6} {:>10} {:>10}\n",
            r.pipeline,
            format!("{}/{}", r.playbook, r.action),
            r.offered,
            r.approved,
            r.rejected,
            r.expired,
            r.healed,
            r.not_healed,
            r.median_minutes_to_heal
                .map_or("-".to_string(), |m| format!("{m:.1}"))
        ));
        out.push_str(&format!("  {}\n", r.sentence()));
    }
    out
}
