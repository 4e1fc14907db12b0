//! HTTP handlers of the ingest routes. Each route authenticates with its own
//! credential (constant-time), limits the body, parses with the source's
//! pure adapter and stores through [`super::IngestService`]. Every refusal is
//! a JSON error (400 malformed, 401 credentials, 413 too large, 422 shape)
//! and writes nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};

use super::generic::{self, GenericError};
use super::signature;
use crate::config::Secret;
use crate::domain::RunSource;
use crate::http::{ApiError, AppState, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/runs", post(post_runs))
}

/// Reads the body, turning the body-limit rejection into a JSON 413.
pub(crate) fn body_or_413(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::TooLarge,
                "request body is larger than server.max_body_bytes",
            )
        } else {
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("cannot read the body: {rejection}"),
            )
        }
    })
}

/// Checks `Authorization: Bearer` against the ingest token. Without a
/// configured token the route is open (only allowed on loopback, which
/// `serve` enforces at start).
pub(crate) fn require_bearer(secret: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(secret) = secret else { return Ok(()) };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = signature::parse_bearer(header)
        .map_err(|e| ApiError::unauthorized(format!("bearer token {e}")))?;
    signature::verify_token(secret.expose().as_bytes(), Some(token))
        .map_err(|e| ApiError::unauthorized(format!("bearer token {e}")))
}

/// `POST /v1/runs`: one normalised run or an array of them.
async fn post_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    require_bearer(state.secrets.ingest_token.as_ref(), &headers)?;
    let body = body_or_413(body)?;
    let runs = generic::parse_runs(&body, state.config.ingest.max_batch).map_err(|e| match e {
        GenericError::Malformed(e) => ApiError::malformed(&e),
        GenericError::Invalid(details) => ApiError::new(
            ErrorCode::InvalidShape,
            format!(
                "{} problem(s) in the runs; nothing was stored",
                details.len()
            ),
        )
        .with_details(details),
    })?;
    let delivery = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256);
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
