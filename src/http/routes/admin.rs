//! The admin routes (admin token only): deciding plans and changing how a
//! pipeline alerts when chat is down or from automation.
//!
//! - `POST /v1/plans/{id}/approve`, `POST /v1/plans/{id}/reject`:
//!   `{"as": "NAME", "reason": "...", "via": "cli"|"api"}` → the vote's
//!   ruling (`via` defaults to `api`; `pipemedic approve|reject` sends `cli`).
//! - `POST /v1/pipelines/{name}/silence`: `{"as": "NAME", "for": "2h"}`.
//! - `POST /v1/pipelines/{name}/unsilence`: `{"as": "NAME"}`.
//! - `POST /v1/pipelines/{name}/accept-baseline`: `{"as": "NAME", "metric": "duration_s"}`
//!   (metric optional).
//!
//! Each is audited under `cli:NAME` (or `api:NAME`); the handlers only read
//! the request and call [`crate::healing`] or [`crate::chatops::admin`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::chatops::admin;
use crate::domain::{Choice, FieldError, Via};
use crate::healing::{DirectDecision, DirectOutcome};
use crate::http::extract::{body_or_413, require_json, require_scope, Scope};
use crate::http::shape::JsonPath;
use crate::http::{ApiError, AppState, ErrorCode};

/// Longest operator name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Longest reason accepted.
pub const MAX_REASON_LEN: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/plans/{id}/approve", post(approve))
        .route("/v1/plans/{id}/reject", post(reject))
        .route("/v1/pipelines/{name}/silence", post(silence))
        .route("/v1/pipelines/{name}/unsilence", post(unsilence))
        .route(
            "/v1/pipelines/{name}/accept-baseline",
            post(accept_baseline),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    #[serde(rename = "as")]
    operator: Option<String>,
    reason: Option<String>,
    via: Option<String>,
    #[serde(rename = "for")]
    duration: Option<String>,
    metric: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidShape, format!("{field} {message}"))
        .with_details(vec![FieldError::new(field, message)])
}

/// Reads the body (empty is `{}`) and checks the operator's name.
fn read_body(body: &[u8]) -> Result<(AdminBody, String), ApiError> {
    let body: AdminBody = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(body)
    }
    .map_err(|e| {
        if e.is_data() {
            ApiError::new(
                ErrorCode::InvalidShape,
                format!("the body has the wrong shape: {e}"),
            )
        } else {
            ApiError::malformed(&e)
        }
    })?;
    let operator = body.operator.as_deref().map(str::trim).unwrap_or_default();
    if operator.is_empty() {
        return Err(invalid(
            "as",
            "is required: who is deciding (for the audit log)",
        ));
    }
    if operator.chars().count() > MAX_NAME_LEN
        || !operator
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(invalid(
            "as",
            &format!("must be at most {MAX_NAME_LEN} letters, digits, '.', '_', '-' or '@'"),
        ));
    }
    let operator = operator.to_string();
    Ok((body, operator))
}

fn via_of(body: &AdminBody) -> Result<Via, ApiError> {
    match body.via.as_deref() {
        None | Some("api") => Ok(Via::Api),
        Some("cli") => Ok(Via::Cli),
        Some(_) => Err(invalid("via", "must be \"api\" or \"cli\"")),
    }
}

async fn decide(
    state: &AppState,
    headers: &HeaderMap,
    plan_id: i64,
    choice: Choice,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DirectOutcome>, ApiError> {
    require_scope(&state.secrets, Scope::Admin, headers)?;
    require_json(headers)?;
    let body = body_or_413(body)?;
    let (body, operator) = read_body(&body)?;
    let via = via_of(&body)?;
    let reason = body.reason.map(|r| r.trim().to_string());
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_LEN || r.chars().any(char::is_control))
    {
        return Err(invalid(
            "reason",
            &format!("must be at most {MAX_REASON_LEN} characters, without control characters"),
        ));
    }
    let outcome = state
        .healing
        .decide_plan(&DirectDecision {
            plan_id,
            choice,
            operator,
            via,
            reason,
        })
        .await?;
    Ok(Json(outcome))
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DirectOutcome>, ApiError> {
    decide(&state, &headers, id, Choice::Approve, body).await
}

async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<i64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DirectOutcome>, ApiError> {
    decide(&state, &headers, id, Choice::Reject, body).await
}

/// The checks every pipeline admin route shares; the actor and how it came.
fn pipeline_admin(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<(AdminBody, String, &'static str), ApiError> {
    require_scope(&state.secrets, Scope::Admin, headers)?;
    require_json(headers)?;
    let body = body_or_413(body)?;
    let (body, operator) = read_body(&body)?;
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be a pipeline name or glob of at most 200 characters",
        ));
    }
    let via = via_of(&body)?.as_str();
    Ok((body, format!("{via}:{operator}"), via))
}

async fn silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (body, actor, via) = pipeline_admin(&state, &headers, &name, body)?;
    let duration = body
        .duration
        .as_deref()
        .and_then(crate::chatops::commands::parse_duration)
        .ok_or_else(|| invalid("for", "must be a duration such as 30m, 2h, 1d or 1w"))?;
    let now = state.clock.now();
    let until = now + duration;
    let id = admin::silence(&state.store, &name, until, &actor, via, now).await?;
    Ok(Json(
        serde_json::json!({"pipeline": name, "silence_id": id, "until": until, "by": actor}),
    ))
}

async fn unsilence(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, actor, via) = pipeline_admin(&state, &headers, &name, body)?;
    let ended = admin::unsilence(&state.store, &name, &actor, via, state.clock.now()).await?;
    Ok(Json(
        serde_json::json!({"pipeline": name, "ended": ended, "by": actor}),
    ))
}

async fn accept_baseline(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (body, actor, via) = pipeline_admin(&state, &headers, &name, body)?;
    if let Some(m) = body.metric.as_deref() {
        if !crate::domain::BUILTIN_METRICS.contains(&m) {
            return Err(invalid(
                "metric",
                &format!(
                    "must be one of: {}",
                    crate::domain::BUILTIN_METRICS.join(", ")
                ),
            ));
        }
    }
    let id = admin::accept_baseline(
        &state.store,
        &name,
        body.metric.as_deref(),
        &actor,
        via,
        state.clock.now(),
    )
    .await?;
    Ok(Json(
        serde_json::json!({"pipeline": name, "reset_id": id, "metric": body.metric, "by": actor}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_need_a_plain_operator_name() {
        assert_eq!(read_body(br#"{"as": "alice"}"#).unwrap().1, "alice");
        for bad in [
            &b""[..],
            br#"{"as": ""}"#,
            br#"{"as": "a b"}"#,
            br#"{"as": "<!channel>"}"#,
            br#"{"as": "x", "extra": 1}"#,
        ] {
            assert_eq!(
                read_body(bad).unwrap_err().code,
                ErrorCode::InvalidShape,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            read_body(b"{nope").unwrap_err().code,
            ErrorCode::MalformedJson
        );
    }
}
