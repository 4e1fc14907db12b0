//! `GET /v1/pipelines/{name}/health` (read token): the same object as
//! `pipemedic health NAME --json`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};

use crate::health::{pipeline_health, PipelineHealth};
use crate::http::extract::{require_scope, Scope};
use crate::http::shape::JsonPath;
use crate::http::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/pipelines/{name}/health", get(get_health))
}

async fn get_health(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
) -> Result<Json<PipelineHealth>, ApiError> {
    require_scope(&state.secrets, Scope::Read, &headers)?;
    let open = state.store.count_active_incidents(&name).await?;
    let health = pipeline_health(&state.store, &name, state.clock.now(), open)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no runs stored for pipeline {name:?}")))?;
    Ok(Json(health))
}
