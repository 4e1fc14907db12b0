//! Request checks every authenticated route shares: the bearer token and
//! the body read under `server.max_body_bytes`. They answer with the JSON
//! errors of [`super::ApiError`]; they know nothing of any capability.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, ErrorCode};
use crate::config::Secret;
use crate::ingest::signature;

/// Reads the body, turning the body-limit rejection into a JSON 413.
pub fn body_or_413(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
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
pub fn require_bearer(secret: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(secret) = secret else { return Ok(()) };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = signature::parse_bearer(header)
        .map_err(|e| ApiError::unauthorized(format!("bearer token {e}")))?;
    signature::verify_token(secret.expose().as_bytes(), Some(token))
        .map_err(|e| ApiError::unauthorized(format!("bearer token {e}")))
}

/// Checks a shared-secret header (constant time). Without a configured
/// secret the route is open.
pub fn require_token(
    secret: Option<&Secret>,
    presented: Option<&str>,
    what: &str,
) -> Result<(), ApiError> {
    match secret {
        None => Ok(()),
        Some(secret) => signature::verify_token(secret.expose().as_bytes(), presented)
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized, format!("{what} {e}"))),
    }
}
