//! `GET /readyz` (no auth): whether this replica should be sent traffic.
//! Ready means the store answers a query within [`STORE_DEADLINE`], every
//! migration this build embeds is applied, and shutdown has not begun;
//! anything else is a 503 with the reason in the JSON error shape.
//! `/healthz` stays liveness (the process answers) and checks nothing.
//!
//! The answer never includes an internal error's text: store failures are
//! logged and answered with a fixed reason.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::http::{ApiError, AppState, ErrorCode};

/// How long the store may take to answer before the replica counts as not
/// ready (orchestrators' probes time out after a second or a few).
pub const STORE_DEADLINE: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/readyz", get(readyz))
}

fn not_ready(reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, format!("not ready: {reason}"))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(not_ready("shutting down"));
    }
    let status = match tokio::time::timeout(STORE_DEADLINE, state.store.schema_status()).await {
        Err(_) => {
            tracing::warn!(
                deadline_ms = STORE_DEADLINE.as_millis() as u64,
                "Readiness: the store did not answer in time."
            );
            return Err(not_ready(format!(
                "the store did not answer within {}s",
                STORE_DEADLINE.as_secs()
            )));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Readiness: the store did not answer.");
            return Err(not_ready("the store does not answer"));
        }
        Ok(Ok(status)) => status,
    };
    if !status.is_current() {
        let versions: Vec<String> = status.pending.iter().map(i64::to_string).collect();
        return Err(not_ready(format!(
            "{} of {} migrations not applied (versions {})",
            status.pending.len(),
            status.embedded,
            versions.join(", ")
        )));
    }
    if state.shutdown.is_cancelled() {
        return Err(not_ready("shutting down"));
    }
    Ok(Json(serde_json::json!({"status": "ready"})))
}
