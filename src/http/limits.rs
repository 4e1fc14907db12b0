//! The per-request limits of the router: the whole-request and body-read
//! timeouts (tower-http) and the per-source-address rate limit on the
//! routes that anyone can reach before a signature is checked (governor).
//! Connection-level limits live in [`super::serve`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use governor::middleware::NoOpMiddleware;
use tower_governor::governor::{GovernorConfigBuilder, SharedRateLimiter};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::{ApiError, ErrorCode};
use crate::config::ServerConfig;

/// How often addresses that have not been seen lately are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Seconds as a duration, for values the configuration check bounded.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(10))
}

/// Adds the body-read and whole-request timeouts to `router`. A request
/// past `request_timeout_s` gets 408; a body stalled past `body_timeout_s`
/// fails its read, which the handlers answer with 408 too.
pub fn with_timeouts<S>(router: Router<S>, server: &ServerConfig) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(RequestBodyTimeoutLayer::new(seconds(server.body_timeout_s)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            seconds(server.request_timeout_s),
        ))
}

/// The rate-limit key: the peer address of the connection (every request
/// served by [`super::serve`] carries it).
#[derive(Debug, Clone, Copy)]
struct SourceIp;

impl KeyExtractor for SourceIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()))
    }
}

/// The 429 (or, should the limiter fail, 500) in the JSON error shape.
fn refusal(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            let mut response = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests from this address (server.webhook_rate_per_second); retry after {wait} s"
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            response
        }
        other => {
            tracing::error!(error = %other, "Rate limiter failed.");
            ApiError::internal().into_response()
        }
    }
}

/// Applies one shared per-address limit to every route of each router in
/// `routers` (the webhooks and the chat endpoints): `webhook_burst`
/// requests at once, then `webhook_rate_per_second`.
pub struct WebhookRateLimit {
    layer: Option<GovernorLayer<SourceIp, NoOpMiddleware, Body>>,
}

impl WebhookRateLimit {
    pub fn new(server: &ServerConfig) -> Self {
        let rate = u64::from(server.webhook_rate_per_second.max(1));
        let period = Duration::from_nanos((1_000_000_000 / rate).max(1));
        let mut builder = GovernorConfigBuilder::default().key_extractor(SourceIp);
        builder
            .period(period)
            .burst_size(server.webhook_burst.max(1));
        let Some(config) = builder.finish() else {
            tracing::error!("The webhook rate limit could not be set up; it is off.");
            return Self { layer: None };
        };
        forget_idle_addresses(config.limiter());
        Self {
            layer: Some(GovernorLayer::new(Arc::new(config)).error_handler(refusal)),
        }
    }

    /// `router` with the limit on each of its routes.
    pub fn apply<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        match &self.layer {
            Some(layer) => router.route_layer(layer.clone()),
            None => router,
        }
    }
}

/// Keeps the limiter's table small: addresses with a full bucket are
/// dropped every [`FORGET_EVERY`], until the router is gone.
fn forget_idle_addresses(limiter: &SharedRateLimiter<IpAddr, NoOpMiddleware>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let limiter = Arc::downgrade(limiter);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(FORGET_EVERY).await;
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::Service;

    #[tokio::test]
    async fn a_request_past_the_request_timeout_gets_a_json_408() {
        let server = ServerConfig {
            request_timeout_s: 0.05,
            ..ServerConfig::default()
        };
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let mut app = with_timeouts(slow, &server)
            .layer(axum::middleware::from_fn(super::super::shape::json_errors));
        let request = Request::builder().uri("/slow").body(Body::empty()).unwrap();
        let response = app.call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "timeout");
    }

    #[test]
    fn any_configured_rate_builds_a_limiter() {
        for rate in [1, 50, u32::MAX] {
            let server = ServerConfig {
                webhook_rate_per_second: rate,
                ..ServerConfig::default()
            };
            assert!(WebhookRateLimit::new(&server).layer.is_some(), "{rate}");
        }
    }
}
