//! The HTTP edge, the top of the library: the router, the application
//! state, the extractors ([`extract`]), the error table ([`error`]) and its
//! one shape for every refusal ([`shape`]), the request limits
//! ([`limits`]), the accept loop ([`serve`]) and the middleware that
//! counts, times and logs every request ([`observe`]). The handlers in [`routes`] call the
//! capabilities' services; no capability knows this module or [`AppState`].

pub mod console;
pub mod error;
pub mod extract;
pub mod limits;
pub mod observe;
pub mod routes;
pub mod serve;
pub mod shape;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
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
/// request timeouts; every refusal is a JSON [`ApiError`]. The console
/// renders with `console_templates`, loaded at start-up.
pub fn router(state: AppState, console_templates: Arc<console::templates::Templates>) -> Router {
    let server = &state.config.server;
    let max_body = server.max_body_bytes;
    let rate_limit = limits::WebhookRateLimit::new(server);
    let routes = Router::new()
        .merge(routes::runs::router())
        .merge(rate_limit.apply(routes::webhooks::router()))
        .merge(routes::health::router())
        .merge(routes::ready::router())
        .merge(routes::incidents::router())
        .merge(routes::outcomes::router())
        .merge(routes::ask::router())
        .merge(routes::admin::router())
        .merge(console::router(&state, console_templates, &rate_limit))
        .merge(
            rate_limit.apply(
                routes::slack::router()
                    .merge(routes::discord::router())
                    .with_state(state.chat.clone()),
            ),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(observe::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(shape::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body));
    limits::with_timeouts(routes, server)
        .layer(middleware::from_fn(shape::json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
