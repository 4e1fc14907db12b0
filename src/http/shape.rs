//! One error shape for every answer that is not a success: the path and
//! query extractors whose rejections are JSON errors, the 405 answer, and
//! the layer that rewrites any other non-2xx without a JSON body (404s,
//! timeouts from tower-http) into `{"code", "message"}` of [`ApiError`].

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{ApiError, ErrorCode};

/// `axum::extract::Path`, refusing with a JSON 400 that says which part of
/// the path is wrong.
#[derive(Debug)]
pub struct JsonPath<T>(pub T);

impl<T, S> FromRequestParts<S> for JsonPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("path: {}", rejection.body_text()),
                )
            })
    }
}

/// `axum::extract::Query`, refusing with a JSON 400 that names the bad
/// parameter.
#[derive(Debug)]
pub struct JsonQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for JsonQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("query: {}", rejection.body_text()),
                )
            })
    }
}

/// The answer to a known route called with a method it does not serve
/// (axum adds the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method; see the Allow header",
    )
}

/// The error code for a status that was answered without one.
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidShape,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidParameter,
    }
}

/// What the caller is told for an answer that carried no message.
fn message_for(status: StatusCode) -> String {
    match status {
        StatusCode::REQUEST_TIMEOUT => {
            "the request did not complete within server.request_timeout_s".to_string()
        }
        s => s
            .canonical_reason()
            .unwrap_or("request refused")
            .to_ascii_lowercase(),
    }
}

/// Rewrites every client or server error that is not already a JSON
/// [`ApiError`] into one, keeping its status and headers (`Allow`,
/// `Retry-After`).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<ErrorCode>().is_some()
    {
        return response;
    }
    let code = code_for(status);
    let (mut parts, _) = response.into_parts();
    let error = ApiError::new(code, message_for(status));
    let body = match serde_json::to_vec(&error) {
        Ok(body) => body,
        Err(_) => return (status, "request refused").into_response(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.extensions.insert(code);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_codes() {
        assert_eq!(code_for(StatusCode::REQUEST_TIMEOUT), ErrorCode::Timeout);
        assert_eq!(
            code_for(StatusCode::METHOD_NOT_ALLOWED),
            ErrorCode::MethodNotAllowed
        );
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), ErrorCode::Internal);
        assert_eq!(
            code_for(StatusCode::BAD_REQUEST),
            ErrorCode::InvalidParameter
        );
        assert!(message_for(StatusCode::REQUEST_TIMEOUT).contains("request_timeout_s"));
    }
}
