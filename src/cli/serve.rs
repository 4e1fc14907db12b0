//! `pipemedic serve` and `pipemedic demo`: running the application, for
//! real or locally with sample history.

use std::path::Path;

use super::{load_config, Exit};
use crate::config::{self, Env};

pub(super) async fn serve(path: Option<&Path>, env: &Env) -> Result<(), Exit> {
    let loaded = load_config(path, env)?;
    tracing::info!(
        config = %loaded.source.as_ref().map_or("built-in defaults".to_string(), |p| p.display().to_string()),
        store = %config::redact_url(&loaded.config.store.url),
        "Starting pipemedic."
    );
    let app = crate::startup::Application::build(loaded)
        .await
        .map_err(|e| match e {
            crate::startup::StartupError::UnauthenticatedPublic { .. }
            | crate::startup::StartupError::BadListen(_) => Exit::BadInput(e.to_string()),
            other => Exit::Failure(other.into()),
        })?;
    crate::startup::cancel_on_signals(app.shutdown_token());
    app.run_until_stopped()
        .await
        .map_err(|e| Exit::Failure(e.into()))
}

pub(super) async fn demo(
    yes: bool,
    planner: crate::demo::DemoPlanner,
    store: Option<String>,
) -> Result<(), Exit> {
    if let Some(url) = store.as_deref() {
        crate::demo::check_store_url(url).map_err(|e| Exit::BadInput(e.to_string()))?;
    }
    match crate::demo::run(crate::demo::DemoOptions {
        yes,
        planner,
        store,
    })
    .await
    {
        Ok(summary) => {
            let healed = summary
                .incidents
                .iter()
                .all(|i| i.recovered_after_min.is_some());
            if yes && (summary.incidents.len() < 2 || !healed) {
                return Err(Exit::Failure(anyhow::anyhow!(
                    "the demo did not complete its loop: {} incidents, all healed: {healed}",
                    summary.incidents.len()
                )));
            }
            Ok(())
        }
        Err(e @ crate::demo::DemoError::BadStore { .. }) => Err(Exit::BadInput(e.to_string())),
        Err(e) => Err(Exit::Failure(e.into())),
    }
}
