//! Incidents: `pipemedic plan`, drafting a remediation plan for a stored
//! incident.

use std::path::Path;

use super::{load_config, open_store, Exit};
use crate::config::{self, Env};

/// `pipemedic plan INCIDENT [--dry-run]`: drafts a plan with the configured
/// planner and prints it; exit 1 when no valid plan came out.
pub(super) async fn plan(
    path: Option<&Path>,
    env: &Env,
    incident: &str,
    dry_run: bool,
) -> Result<(), Exit> {
    use crate::plan::{PlanService, PlanServiceError};
    let id: i64 = incident
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| Exit::BadInput(format!("{incident:?} is not an incident number")))?;
    let loaded = load_config(path, env)?;
    let store = open_store(&loaded).await?;
    let bedrock = if loaded.config.planner.backend == config::PlannerBackend::Bedrock {
        let aws = crate::aws::AwsSettings::from_config(&loaded.config.aws)
            .load()
            .await;
        Some(aws.bedrock())
    } else {
        None
    };
    let service = PlanService::from_config(
        &loaded.config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::new()),
        std::sync::Arc::new(crate::clock::SystemClock),
        bedrock,
    )
    .map_err(|e| Exit::BadInput(e.to_string()))?;
    let incident = match store.incident(id).await {
        Ok(Some(incident)) => incident,
        Ok(None) => {
            store.close().await;
            return Err(Exit::BadInput(format!(
                "no incident #{id} (`GET /v1/incidents` lists them)"
            )));
        }
        Err(e) => {
            store.close().await;
            return Err(Exit::Failure(e.into()));
        }
    };
    let drafted = service
        .draft_for_incident(&incident, incident.last_run_pk, &incident.verdict, !dry_run)
        .await;
    store.close().await;
    let drafted = drafted.map_err(|e| match e {
        PlanServiceError::UnknownAnomaly(_) | PlanServiceError::NoAnomaly(_) => {
            Exit::BadInput(e.to_string())
        }
        other => Exit::Failure(other.into()),
    })?;
    print!("{}", crate::plan::render_report(&drafted));
    if drafted.outcome.is_valid() {
        Ok(())
    } else {
        Err(Exit::Failure(anyhow::anyhow!(
            "no valid plan for incident {id}; nothing is offered for approval"
        )))
    }
}
