//! `GET /v1/outcomes[?pipeline=P]` (read token): each fix's track record per
//! pipeline and playbook action, the same body as `pipemedic outcomes
//! --json`: `{"outcomes": [{"pipeline", "playbook", "action", "offered",
//! "approved", "rejected", "expired", "healed", "not_healed",
//! "median_minutes_to_heal", ...}]}`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::http::extract::{require_scope, Scope};
use crate::http::shape::JsonQuery;
use crate::http::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/outcomes", get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomesQuery {
    pipeline: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<OutcomesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_scope(&state.secrets, Scope::Read, &headers)?;
    let pipeline = q.pipeline.as_deref().filter(|p| !p.is_empty());
    let records = state.store.track_records(pipeline).await?;
    Ok(Json(serde_json::json!({ "outcomes": records })))
}
