//! The HTTP edge, the top of the library: the router, the application
//! state, the extractors ([`extract`]), the error table ([`error`]) and its
//! one shape for every refusal ([`shape`]), the request limits
//! ([`limits`]), the accept loop ([`serve`]) and the middleware that times
//! requests and counts rejections. The handlers in [`routes`] call the
//! capabilities' services; no capability knows this module or [`AppState`].

pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;
pub mod serve;
pub mod shape;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::chat::ChatState;
use crate::clock::Clock;
use crate::config::{Config, Secrets};
use crate::ingest::IngestService;
use crate::metrics::Metrics;
use crate::store::Store;

pub use error::{ApiError, ErrorCode};

/// Everything a handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub secrets: Arc<Secrets>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub ingest: Arc<IngestService>,
    /// How AWS clients are built (region, endpoints, credentials).
    pub aws: Arc<crate::aws::AwsSettings>,
    /// Chat inbound: verification secrets and the event sink (optional parts).
    pub chat: ChatState,
    /// Incidents: where detection hands scored runs, and status changes.
    pub incidents: crate::incidents::IncidentService,
    /// The loop from incident to verified fix: plans, approvals, execution.
    pub healing: crate::healing::HealingService,
    /// Answers questions (the same for HTTP, chat and the CLI).
    pub asker: Arc<crate::ask::Asker>,
    /// Cancelled when shutdown begins (`/readyz` answers 503 from then on).
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The full router with every route of the design that is built. The
/// webhook and chat routes, which anyone can reach before a signature is
/// checked, share a per-address rate limit; every route has the body and
/// request timeouts; every refusal is a JSON [`ApiError`].
pub fn router(state: AppState) -> Router {
    let server = &state.config.server;
    let max_body = server.max_body_bytes;
    let rate_limit = limits::WebhookRateLimit::new(server);
    let routes = Router::new()
        .merge(routes::runs::router())
        .merge(rate_limit.apply(routes::webhooks::router()))
        .merge(routes::health::router())
        .merge(routes::ready::router())
        .merge(routes::incidents::router())
        .merge(routes::ask::router())
        .merge(routes::admin::router())
        .merge(
            rate_limit.apply(
                routes::slack::router()
                    .merge(routes::discord::router())
                    .with_state(state.chat.clone()),
            ),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(shape::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body));
    limits::with_timeouts(routes, server)
        .layer(middleware::from_fn(shape::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Times every request by matched route and counts rejected ones by reason.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_request(&route, started.elapsed().as_secs_f64());
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.request_rejected(&route, code.as_str());
    }
    response
}
