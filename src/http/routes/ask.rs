//! `POST /v1/ask` (read token): `{"question": "..."}` in, the [`crate::ask::Answer`]
//! of [`crate::ask::Asker`] as `{"answer", "facts", "sources", ...}` out (a
//! bearer sees every pipeline). The handler only reads:
//! 400 for a body that is not JSON, 415 for another Content-Type, 422 for a missing, empty or overlong
//! question, the JSON error shape of [`crate::http::ApiError`] throughout.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};

use crate::ask::{Answer, Visibility};
use crate::domain::FieldError;
use crate::http::extract::{body_or_413, require_json, require_scope, Scope};
use crate::http::{ApiError, AppState, ErrorCode};

/// Longest question accepted, in characters.
pub const MAX_QUESTION_LEN: usize = 2_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/ask", post(post_ask))
}

pub(crate) fn invalid(message: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidShape,
        "the body must be {\"question\": \"...\"}",
    )
    .with_details(vec![FieldError::new("question", message)])
}

/// Reads the question out of a request body.
pub fn question_of(body: &[u8]) -> Result<String, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::malformed(&e))?;
    let question = match value.get("question") {
        None | Some(serde_json::Value::Null) => return Err(invalid("is required")),
        Some(serde_json::Value::String(q)) => q.trim().to_string(),
        Some(_) => return Err(invalid("must be a string")),
    };
    if question.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if question.chars().count() > MAX_QUESTION_LEN {
        return Err(invalid(&format!(
            "must be at most {MAX_QUESTION_LEN} characters"
        )));
    }
    Ok(question)
}

async fn post_ask(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer>, ApiError> {
    require_scope(&state.secrets, Scope::Read, &headers)?;
    require_json(&headers)?;
    let body = body_or_413(body)?;
    let question = question_of(&body)?;
    let answer = state
        .asker
        .ask(&question, state.clock.now(), Visibility::All)
        .await?;
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_read_strictly() {
        assert_eq!(question_of(br#"{"question": " hi "}"#).unwrap(), "hi");
        assert_eq!(
            question_of(b"{not json").unwrap_err().code,
            ErrorCode::MalformedJson
        );
        for body in [
            r#"{}"#,
            r#"{"question": ""}"#,
            r#"{"question": 3}"#,
            r#"[1]"#,
        ] {
            assert_eq!(
                question_of(body.as_bytes()).unwrap_err().code,
                ErrorCode::InvalidShape,
                "{body}"
            );
        }
    }
}
