//! Request checks every authenticated route shares: the bearer token and
//! the body read under `server.max_body_bytes`. They answer with the JSON
//! errors of [`super::ApiError`]; they know nothing of any capability.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, ErrorCode};
use crate::config::Secret;
use crate::ingest::signature;

/// Reads the body, turning the body-limit rejection into a JSON 413 and a
/// body that stalled past `server.body_timeout_s` into a JSON 408.
pub fn body_or_413(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if timed_out(&rejection) {
            ApiError::new(
                ErrorCode::Timeout,
                "the request body did not arrive within server.body_timeout_s",
            )
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
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

/// Whether reading the body failed because the body timeout ran out.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Refuses a body declared as anything but JSON with a JSON 415. A request
/// without `Content-Type` is read as JSON, as before.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type {:?} is not JSON; send application/json",
                essence.chars().take(100).collect::<String>()
            ),
        ))
    }
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
