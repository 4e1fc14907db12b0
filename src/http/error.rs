//! The one table that maps failures to HTTP status codes and the JSON error
//! body `{"code", "message", "details"}`. Internal errors are logged and
//! answered with a generic message; nothing internal leaks to the caller.
//! Answers made outside the handlers (unknown routes, wrong methods,
//! timeouts) are rewritten into the same shape by [`crate::http::shape`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::ask::AskError;
use crate::chat::discord::interactions::InteractionError;
use crate::chat::slack::events::SlackPayloadError;
use crate::domain::FieldError;
use crate::healing::DirectDecisionError;
use crate::ingest::generic::GenericError;
use crate::ingest::{AdapterError, AdapterErrorKind, IngestError};
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    InvalidShape,
    Unauthorized,
    /// A valid token of the wrong scope (the message names the one needed).
    Forbidden,
    BadSignature,
    TooLarge,
    NotFound,
    Unavailable,
    Internal,
    InvalidParameter,
    MethodNotAllowed,
    Timeout,
    UnsupportedMediaType,
    RateLimited,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson => StatusCode::BAD_REQUEST,
            Self::InvalidShape => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidParameter => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Short label used in the rejection metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidShape => "invalid_shape",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::BadSignature => "bad_signature",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::InvalidParameter => "invalid_parameter",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    pub fn malformed(e: &serde_json::Error) -> Self {
        Self::new(
            ErrorCode::MalformedJson,
            format!(
                "body is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "Store failure while handling a request.");
        Self::new(
            ErrorCode::Unavailable,
            "the store is unavailable; retry later",
        )
    }
}

impl From<GenericError> for ApiError {
    fn from(e: GenericError) -> Self {
        match e {
            GenericError::Malformed(e) => Self::malformed(&e),
            GenericError::Invalid(details) => Self::new(
                ErrorCode::InvalidShape,
                format!(
                    "{} problem(s) in the runs; nothing was stored",
                    details.len()
                ),
            )
            .with_details(details),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid(details) => {
                Self::new(ErrorCode::InvalidShape, invalid_message(&details)).with_details(details)
            }
            IngestError::Store(e) => Self::from(e),
        }
    }
}

/// The message of a refused run: its first problem, and how many more.
fn invalid_message(details: &[FieldError]) -> String {
    match details {
        [] => "the run is invalid; nothing was stored".to_string(),
        [one] => format!("{one}; nothing was stored"),
        [first, rest @ ..] => format!(
            "{first} (and {} more problem(s)); nothing was stored",
            rest.len()
        ),
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        match e.kind() {
            AdapterErrorKind::Malformed => match e {
                AdapterError::Malformed(inner) => Self::malformed(&inner),
                other => Self::new(ErrorCode::MalformedJson, other.to_string()),
            },
            AdapterErrorKind::Shape => {
                let details = e.field_error().into_iter().collect();
                Self::new(ErrorCode::InvalidShape, e.to_string()).with_details(details)
            }
        }
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        match e {
            AskError::EmptyQuestion => super::routes::ask::invalid("must not be empty"),
            AskError::Store(e) => Self::from(e),
        }
    }
}

impl From<DirectDecisionError> for ApiError {
    fn from(e: DirectDecisionError) -> Self {
        match e {
            DirectDecisionError::UnknownPlan(_) => Self::not_found(e.to_string()),
            DirectDecisionError::NotOffered(_) => Self::new(ErrorCode::InvalidShape, e.to_string()),
            DirectDecisionError::Healing(e) => {
                tracing::error!(error = %e, "A decision through the admin API failed.");
                Self::new(
                    ErrorCode::Unavailable,
                    "the decision could not be recorded; retry later",
                )
            }
        }
    }
}

impl From<SlackPayloadError> for ApiError {
    fn from(e: SlackPayloadError) -> Self {
        match e {
            SlackPayloadError::Json(e) => Self::malformed(&e),
            SlackPayloadError::Form(e) => Self::new(
                ErrorCode::MalformedJson,
                format!("form body is malformed: {e}"),
            ),
            SlackPayloadError::Shape(m) => Self::new(ErrorCode::InvalidShape, m),
        }
    }
}

impl From<InteractionError> for ApiError {
    fn from(e: InteractionError) -> Self {
        match e {
            InteractionError::Json(e) => Self::malformed(&e),
            InteractionError::Shape(m) => Self::new(ErrorCode::InvalidShape, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(&self)).into_response();
        // Handlers read the code back to count rejections.
        response.extensions_mut().insert(self.code);
        response
    }
}
