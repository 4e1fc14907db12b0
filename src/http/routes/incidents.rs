//! `GET /v1/incidents` and `GET /v1/incidents/{id}` (read token): incidents as
//! JSON, each with its plans and its approval requests (votes and step
//! executions), and for one incident its whole story too — its anomaly and
//! every audit entry about it in order (alert, status changes, decisions,
//! plans, executions).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::http::extract::{require_scope, Scope};
use crate::http::shape::{JsonPath, JsonQuery};
use crate::http::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/incidents", get(list))
        .route("/v1/incidents/{id}", get(detail))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Only incidents not resolved or dismissed.
    #[serde(default)]
    active: bool,
    pipeline: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_scope(&state.secrets, Scope::Read, &headers)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let mut listed = Vec::new();
    for incident in state
        .store
        .incidents(q.active, q.pipeline.as_deref(), limit)
        .await?
    {
        let plans = state.store.plans_for_incident(&incident).await?;
        let approvals = state.store.incident_approvals(incident.id).await?;
        let mut item = serde_json::to_value(&incident).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut item {
            map.insert(
                "plans".into(),
                serde_json::to_value(plans).unwrap_or_default(),
            );
            map.insert(
                "approvals".into(),
                serde_json::to_value(approvals).unwrap_or_default(),
            );
        }
        listed.push(item);
    }
    Ok(Json(serde_json::json!({ "incidents": listed })))
}

async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_scope(&state.secrets, Scope::Read, &headers)?;
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let mut subjects = vec![format!("incident/{id}")];
    let anomaly = match incident.anomaly_id {
        Some(a) => {
            subjects.push(format!("anomaly/{a}"));
            state.store.anomaly(a).await?
        }
        None => None,
    };
    let plans = state.store.plans_for_incident(&incident).await?;
    let approvals = state.store.incident_approvals(id).await?;
    subjects.extend(
        approvals
            .iter()
            .map(|a| format!("approval_request:{}", a.request.id)),
    );
    let story = state.store.audit_for(&subjects).await?;
    Ok(Json(serde_json::json!({
        "incident": incident,
        "anomaly": anomaly,
        "plans": plans,
        "approvals": approvals,
        "story": story,
    })))
}
