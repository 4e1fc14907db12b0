//! `POST /v1/runs`, the generic ingest route. Each route authenticates with its own
//! credential (constant-time), limits the body, parses with the source's
//! pure adapter and stores through [`crate::ingest::IngestService`]. Every refusal is
//! a JSON error (400 malformed, 401 credentials, 413 too large, 415 not
//! JSON, 422 shape)
//! and writes nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

use crate::domain::RunSource;
use crate::http::extract::{body_or_413, require_json, require_scope, Scope};
use crate::http::{ApiError, AppState};
use crate::ingest::{delivery_id, generic};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/runs", post(post_runs))
}

/// `POST /v1/runs`: one normalised run or an array of them.
async fn post_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require_scope(&state.secrets, Scope::Ingest, &headers)?;
    require_json(&headers)?;
    let body = body_or_413(body)?;
    let now = state.ingest.clock().now();
    let runs = generic::parse_runs(&body, state.config.ingest.max_batch, now)?;
    let delivery = delivery_id(
        "Idempotency-Key",
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
    )?;
    let report = state
        .ingest
        .accept_runs(RunSource::Generic, delivery, &runs, true)
        .await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "accepted": report.runs.len(),
            "duplicate_delivery": report.duplicate_delivery,
            "runs": report.runs,
        })),
    ))
}
