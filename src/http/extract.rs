//! Request checks every authenticated route shares: the bearer token and
//! the body read under `server.max_body_bytes`. They answer with the JSON
//! errors of [`super::ApiError`]; they know nothing of any capability.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};

use super::{ApiError, ErrorCode};
use crate::config::{Secret, Secrets};
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

/// Which API token a route needs. Tokens are separate: the ingest token
/// only posts runs, the read token only reads (and asks), the admin token
/// changes things and also satisfies every read route (admin ⊇ read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /v1/runs`: `PIPEMEDIC_INGEST_TOKEN`.
    Ingest,
    /// GET API routes and `POST /v1/ask`: `PIPEMEDIC_READ_TOKEN` (or the admin token).
    Read,
    /// Silence, accept-baseline, approve and reject: `PIPEMEDIC_ADMIN_TOKEN`.
    Admin,
}

impl Scope {
    /// The environment variable of the token this scope needs.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Ingest => "PIPEMEDIC_INGEST_TOKEN",
            Self::Read => "PIPEMEDIC_READ_TOKEN",
            Self::Admin => "PIPEMEDIC_ADMIN_TOKEN",
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::Ingest => "the ingest token (PIPEMEDIC_INGEST_TOKEN)",
            Self::Read => "the read token (PIPEMEDIC_READ_TOKEN) or the admin token",
            Self::Admin => "the admin token (PIPEMEDIC_ADMIN_TOKEN)",
        }
    }

    /// The configured token that defines this scope.
    fn own(self, secrets: &Secrets) -> Option<&Secret> {
        match self {
            Self::Ingest => secrets.ingest_token.as_ref(),
            Self::Read => secrets.read_token.as_ref(),
            Self::Admin => secrets.admin_token.as_ref(),
        }
    }

    /// The configured tokens this scope accepts.
    fn accepted(self, secrets: &Secrets) -> Vec<&Secret> {
        let mut accepted: Vec<&Secret> = self.own(secrets).into_iter().collect();
        if self == Self::Read {
            accepted.extend(secrets.admin_token.as_ref());
        }
        accepted
    }
}

/// Checks `Authorization: Bearer` for a route of `scope` (constant time):
/// 401 when the token is missing or is none of pipemedic's, 403 (naming
/// the token needed) when it is another scope's token.
///
/// Without the scope's own token configured, ingest and read routes are
/// open (only allowed on loopback, which `serve` enforces at start); admin
/// routes are never open: they answer 403 until `PIPEMEDIC_ADMIN_TOKEN` is
/// set.
pub fn require_scope(secrets: &Secrets, scope: Scope, headers: &HeaderMap) -> Result<(), ApiError> {
    if scope.own(secrets).is_none() {
        if scope == Scope::Admin {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "admin routes are off: set PIPEMEDIC_ADMIN_TOKEN on the server to use them",
            ));
        }
        return Ok(());
    }
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = signature::parse_bearer(header)
        .map_err(|e| ApiError::unauthorized(format!("bearer token {e}")))?;
    let matches =
        |secret: &Secret| signature::verify_token(secret.expose().as_bytes(), Some(token)).is_ok();
    if scope.accepted(secrets).into_iter().any(matches) {
        return Ok(());
    }
    let known = [
        secrets.ingest_token.as_ref(),
        secrets.read_token.as_ref(),
        secrets.admin_token.as_ref(),
    ];
    if known.into_iter().flatten().any(matches) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route needs {}", scope.needs()),
        ));
    }
    Err(ApiError::unauthorized("bearer token is not valid"))
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
